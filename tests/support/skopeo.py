"""Thin, hermetic wrappers around `skopeo copy` and `skopeo inspect`.

Each call gets its own temp policy, auth file, registries.conf and registries.d, so neither
the user's nor the machine's containers config changes what a test sees or is changed by it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ._proc import run, run_bytes

SKOPEO_BIN = "skopeo"
DEFAULT_TIMEOUT = 120.0

_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


class _Sandbox:
    """Temp config for one skopeo invocation."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.policy = tmp / "policy.json"
        self.policy.write_text(json.dumps(_POLICY))
        self.authfile = tmp / "auth.json"
        self.authfile.write_text('{"auths": {}}')
        self.registries_conf = tmp / "registries.conf"
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        self.registries_d = tmp / "registries.d"
        self.registries_d.mkdir()
        self.work = tmp / "work"
        self.work.mkdir()

    def global_args(self) -> list[str]:
        return [
            SKOPEO_BIN,
            "--policy",
            str(self.policy),
            "--registries.d",
            str(self.registries_d),
            "--tmpdir",
            str(self.work),
        ]

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
        }
        env["REGISTRY_AUTH_FILE"] = str(self.authfile)
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.registries_conf)
        env["TMPDIR"] = str(self.work)
        return env


@contextlib.contextmanager
def _sandbox() -> Iterator[_Sandbox]:
    with tempfile.TemporaryDirectory(prefix="skopeo-") as tmp:
        yield _Sandbox(Path(tmp))


def _transport_args(
    side: str,
    *,
    creds: str | None,
    tls_verify: bool,
    cert_dir: str | os.PathLike[str] | None,
) -> list[str]:
    args = [f"--{side}-tls-verify={'true' if tls_verify else 'false'}"]
    if creds is not None:
        args += [f"--{side}-creds", creds]
    if cert_dir is not None:
        args += [f"--{side}-cert-dir", str(cert_dir)]
    return args


def copy(
    src: str,
    dest: str,
    *,
    src_creds: str | None = None,
    dest_creds: str | None = None,
    src_tls_verify: bool = True,
    dest_tls_verify: bool = True,
    src_cert_dir: str | os.PathLike[str] | None = None,
    dest_cert_dir: str | os.PathLike[str] | None = None,
    preserve_digests: bool = True,
    all_images: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """`skopeo copy SRC DEST` (transport-qualified refs, e.g. `oci:DIR:TAG`, `docker://...`).

    `*_creds` are `user:password`; `*_tls_verify=False` also allows plain HTTP; `*_cert_dir`
    holds `*.crt` CAs (and client `*.cert`/`*.key`). Raises `CommandError` with skopeo's stderr.
    """
    with _sandbox() as box:
        argv = [*box.global_args(), "copy", "--retry-times", "0"]
        if preserve_digests:
            argv.append("--preserve-digests")
        if all_images:
            argv.append("--all")
        argv += _transport_args(
            "src", creds=src_creds, tls_verify=src_tls_verify, cert_dir=src_cert_dir
        )
        argv += _transport_args(
            "dest", creds=dest_creds, tls_verify=dest_tls_verify, cert_dir=dest_cert_dir
        )
        argv += [src, dest]
        run(argv, timeout=timeout, env=box.env())


def inspect_raw(
    ref: str,
    *,
    creds: str | None = None,
    tls_verify: bool = True,
    cert_dir: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
) -> bytes:
    """The exact manifest (or index) bytes `ref` resolves to, as the registry serves them."""
    with _sandbox() as box:
        argv = [*box.global_args(), "inspect", "--raw", "--retry-times", "0"]
        argv += [f"--tls-verify={'true' if tls_verify else 'false'}"]
        if creds is not None:
            argv += ["--creds", creds]
        if cert_dir is not None:
            argv += ["--cert-dir", str(cert_dir)]
        argv.append(ref)
        # Bytes, not text: the digest is over the exact bytes served.
        return run_bytes(argv, timeout=timeout, env=box.env()).stdout


def inspect_digest(
    ref: str,
    *,
    creds: str | None = None,
    tls_verify: bool = True,
    cert_dir: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
) -> str:
    """The top-level manifest digest of `ref` (`sha256:...`), hashed from the raw bytes.

    Hashing `--raw` output gives the digest of an index itself, whereas `{{.Digest}}` would
    describe the platform image skopeo picks from it.
    """
    raw = inspect_raw(ref, creds=creds, tls_verify=tls_verify, cert_dir=cert_dir, timeout=timeout)
    return "sha256:" + hashlib.sha256(raw).hexdigest()
