"""A node and a site as the end-to-end tests play them around the charm's registry.

A node is configured only from what the charm's `client-config` action printed (its
hosts.toml files), and pulls with `ctr` or, as kubelet does, through containerd's CRI
plugin with public names (gcr.io, registry.k8s.io, a registry's domain) mapped to
loopback addresses in its own mount namespace, so that no public name is ever resolved.
Public registries are emulated on loopback addresses of their own, on :443; the unit's
site DNS and trust store reach them (`unit_site`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

from . import pki
from .containerd import Containerd, HostEndpoint, write_hosts_toml
from .registry import RegistryProcess

CRI_REGISTRY = 'plugins."io.containerd.grpc.v1.cri".registry'


def client_config(ctx, state: testing.State, hosts_dir: Path, **params: str | bool) -> dict:
    """Run client-config and write its files into `hosts_dir`, as a node's operator would."""
    params = {"hosts-dir": str(hosts_dir), **params}
    ctx.run(ctx.on.action("client-config", params=params), state)
    results = ctx.action_results
    assert results is not None
    for relative, content in json.loads(results["files"]).items():
        path = hosts_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return results


def pull_plain(containerd: Containerd, hosts_dir: Path, ref: str) -> str:
    """`ctr` pulls `ref` from a plain-HTTP registry (its netloc), returning the digest."""
    netloc = ref.split("/", 1)[0]
    endpoint = HostEndpoint(f"http://{netloc}")
    write_hosts_toml(hosts_dir, netloc, server_url=f"http://{netloc}", endpoints=[endpoint])
    return containerd.pull(ref, hosts_dir=hosts_dir)


def cri_registry(hosts_dir: Path, extra: str = "") -> str:
    """The CRI registry tables of a node's config.toml: hosts.toml files in `hosts_dir`."""
    return f'[{CRI_REGISTRY}]\n  config_path = "{hosts_dir}"\n{extra}'


@contextlib.contextmanager
def public_registry(
    name: str, address: str, ca: pki.CertificateAuthority, **kw
) -> Iterator[RegistryProcess]:
    """A "public" registry (`gcr.io`, `k8s.gcr.io`) emulated on `address`:443, TLS for `name`."""
    cert, key = pki.issue(ca, name, [name])
    with RegistryProcess(tls_cert_pem=cert, tls_key_pem=key, host=address, port=443, **kw) as r:
        yield r


def unit_site(
    monkeypatch: pytest.MonkeyPatch, workdir: Path, names: dict[str, str], ca_pem: bytes
) -> None:
    """The unit's site DNS and trust store, for the skopeo the charm runs (and only that).

    A `skopeo` first on PATH runs the real one in a private mount namespace whose
    /etc/hosts maps `names` (name -> loopback address) on top of the current one, whose
    resolver has no name server (a name not mapped fails instead of leaking a query), and
    which trusts `ca_pem`, as the site's own CA would be trusted.
    """
    real = shutil.which("skopeo")
    assert real is not None
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "names").write_text("".join(f"{a} {n}\n" for n, a in names.items()))
    (workdir / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    (workdir / "ca.crt").write_bytes(ca_pem)
    bind = 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift'
    wrapper = workdir / "skopeo"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'hosts="{workdir}/hosts.$$"\n'
        f'cat "{workdir}/names" /etc/hosts > "$hosts"\n'
        f'export SSL_CERT_FILE="{workdir}/ca.crt"\n'
        f"exec unshare --mount --propagation private -- sh -c '{bind} && exec \"$@\"' "
        f'"$hosts" "{workdir}/resolv.conf" {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{workdir}:{os.environ['PATH']}")
