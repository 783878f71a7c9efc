"""A real, throwaway containerd daemon driven with `ctr` or CRI, and hosts.toml writers.

The daemon gets its own root, state dir and unix socket under a temp dir and no TCP
listeners, so it needs neither network nor a configured host. By default the CRI plugin is
off and pulls go through `ctr --hosts-dir`. Given a CRI registry configuration (the
`[plugins."io.containerd.grpc.v1.cri".registry]` tables a node's config.toml holds), the
CRI plugin serves on the same socket and pulls as kubelet's do (see `support.cri`), trusting
only the CAs the test names (`SSL_CERT_FILE`), and resolving names the test maps to loopback
addresses through its own /etc/hosts in a private mount namespace (`etc_hosts`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._proc import CommandError, ManagedProcess, owned_tempdir, run
from .cri import CRIClient, CRIError
from .wait import WaitTimeoutError, wait_for

CONTAINERD_BIN = "containerd"
CTR_BIN = "ctr"
DEFAULT_NAMESPACE = "test"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; containerd also adds ".ttrpc"

CRI_PLUGIN = "io.containerd.grpc.v1.cri"
# Plugins that need privileges, special filesystems, or network, or write outside our root.
_DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.internal.v1.opt",  # would create /opt/containerd
)


def _toml_str(value: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes.
    return json.dumps(value)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"unsupported TOML value: {value!r}")


def overlay_mount_works(base_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether this sandbox lets us mount overlayfs (root, and not blocked by a container)."""
    with tempfile.TemporaryDirectory(prefix="ovl-", dir=base_dir) as tmp:
        dirs = {name: Path(tmp, name) for name in ("lower", "upper", "work", "merged")}
        for path in dirs.values():
            path.mkdir()
        opts = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        try:
            run(["mount", "-t", "overlay", "overlay", "-o", opts, str(dirs["merged"])], timeout=10)
        except (CommandError, OSError):
            return False
        run(["umount", "-l", str(dirs["merged"])], timeout=10, check=False)
        return True


class Containerd:
    """Start `containerd` in a temp dir; pull with `ctr`; clean everything up on `stop()`.

    `snapshotter` is "overlayfs", "native", or "auto" (overlayfs if a probe mount works).
    Use as a context manager.
    """

    def __init__(
        self,
        *,
        snapshotter: str = "auto",
        namespace: str = DEFAULT_NAMESPACE,
        startup_timeout: float = 30.0,
        cri_registry: str | None = None,
        trusted_pem: bytes = b"",
        etc_hosts: Mapping[str, str] | None = None,
    ):
        self.namespace = namespace
        self._requested_snapshotter = snapshotter
        self.snapshotter = snapshotter
        self._startup_timeout = startup_timeout
        self.cri_registry = cri_registry
        self.trusted_pem = trusted_pem
        self.etc_hosts = dict(etc_hosts or {})
        self.workdir = owned_tempdir(self, "ctrd-")
        if len(str(self.workdir / "c.sock")) > _SOCKET_PATH_MAX:
            self.workdir = owned_tempdir(self, "ctrd-", base="/tmp")
        self.root = self.workdir / "root"
        self.state = self.workdir / "state"
        self.address = str(self.workdir / "c.sock")
        self.config_path = self.workdir / "config.toml"
        self.log_path = self.workdir / "containerd.log"
        self.trust_dir = self.workdir / "trust"
        self._proc: ManagedProcess | None = None
        self._env: dict[str, str] | None = None

    def _config(self) -> str:
        disabled = _DISABLED_PLUGINS
        if self.cri_registry is None:
            disabled = (CRI_PLUGIN, *disabled)
        config = (
            "version = 2\n"
            f"root = {_toml_str(str(self.root))}\n"
            f"state = {_toml_str(str(self.state))}\n"
            f"disabled_plugins = [{', '.join(_toml_str(p) for p in disabled)}]\n"
            "\n[grpc]\n"
            f"  address = {_toml_str(self.address)}\n"
            '  tcp_address = ""\n'
            "\n[debug]\n"
            '  address = ""\n'
            '  level = "info"\n'
            "\n[metrics]\n"
            '  address = ""\n'
        )
        if self.cri_registry is None:
            return config
        cri = f'plugins."{CRI_PLUGIN}"'
        return (
            f"{config}\n[{cri}]\n"
            "  disable_tcp_service = true\n"
            '  stream_server_address = "127.0.0.1"\n'
            '  stream_server_port = "0"\n'
            f"[{cri}.containerd]\n"
            f"  snapshotter = {_toml_str(self.snapshotter)}\n"
            f"[{cri}.cni]\n"  # CNI is never used, but it would create /etc/cni/net.d
            f"  bin_dir = {_toml_str(str(self.workdir / 'cni'))}\n"
            f"  conf_dir = {_toml_str(str(self.workdir / 'cni'))}\n"
            f"{self.cri_registry}\n"
        )

    def _argv(self) -> list[str]:
        """containerd, in a private mount namespace with our /etc/hosts when names are mapped.

        Only this process sees the names: the test and every other process resolve as before.
        """
        argv = [CONTAINERD_BIN, "--config", str(self.config_path)]
        if not self.etc_hosts:
            return argv
        hosts = self.workdir / "hosts"
        lines = [f"{address} {name}" for name, address in self.etc_hosts.items()]
        hosts.write_text("\n".join(["127.0.0.1 localhost", *lines]) + "\n")
        # No name server either: a name the test did not map fails instead of leaking a query.
        resolv = self.workdir / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\n")
        bind = 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift'
        return [
            *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
            f'{bind} && exec "$@"',
            str(hosts),
            str(resolv),
            *argv,
        ]

    def start(self) -> Containerd:
        """Start and wait until ready; on any failure, clean up before re-raising."""
        if self._proc is not None:
            raise RuntimeError("containerd already started")
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Containerd:
        """Start the daemon and wait until `ctr version` reaches it over the socket."""
        if self._requested_snapshotter == "auto":
            self.snapshotter = "overlayfs" if overlay_mount_works(self.workdir) else "native"
        self.config_path.write_text(self._config())
        env = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        }
        env.pop("CONTAINERD_ADDRESS", None)
        env.pop("CONTAINERD_NAMESPACE", None)
        env.pop("CONTAINERD_SNAPSHOTTER", None)
        self._env = env
        daemon_env = dict(env)
        if self.cri_registry is not None:
            # The node's trust store: what update-ca-certificates would have installed.
            (self.trust_dir / "certs").mkdir(parents=True, exist_ok=True)
            (self.trust_dir / "ca-certificates.crt").write_bytes(self.trusted_pem)
            daemon_env["SSL_CERT_FILE"] = str(self.trust_dir / "ca-certificates.crt")
            daemon_env["SSL_CERT_DIR"] = str(self.trust_dir / "certs")
        self._proc = ManagedProcess(
            self._argv(), name="containerd", log_path=self.log_path, env=daemon_env
        )
        self._proc.start()
        try:
            wait_for(
                self._ready,
                timeout=self._startup_timeout,
                what=f"containerd to answer on {self.address}",
                ignore=(CommandError, OSError, CRIError),
            )
        except WaitTimeoutError as exc:
            tail = self._proc.log_tail()
            raise WaitTimeoutError(f"{exc}\ncontainerd log:\n{tail}") from exc
        return self

    def _ready(self) -> bool:
        assert self._proc is not None
        self._proc.check_alive()
        if not os.path.exists(self.address):
            return False  # ctr would wait for the socket and miss an early exit
        self.ctr("version", timeout=5)
        if self.cri_registry is not None:
            self.cri.status("probe.invalid/ready:1")  # refused until the CRI plugin is up
        return True

    @functools.cached_property
    def cri(self) -> CRIClient:
        """A CRI image-service client on this daemon's socket (CRI configurations only)."""
        client = CRIClient(self.address)
        weakref.finalize(self, client.close)
        return client

    def ctr(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `ctr` against this daemon and namespace; raise `CommandError` on failure."""
        argv = [CTR_BIN, "--address", self.address, "--namespace", self.namespace, *args]
        return run(argv, timeout=timeout, env=self._env)

    def pull(
        self,
        ref: str,
        *,
        hosts_dir: str | os.PathLike[str] | None,
        user: str | None = None,
        plain_http: bool = False,
        platform: str | None = None,
        timeout: float = 120.0,
    ) -> str:
        """`ctr images pull` through `hosts_dir` (hosts.toml config) and return the digest.

        The digest is the image's target (the manifest or index `ref` resolved to), read back
        from the image store, so it is comparable with the digest a registry reports.
        `user` is `user:password`. Raises `CommandError` with ctr's output on failure.
        """
        args = ["images", "pull", "--snapshotter", self.snapshotter]
        if hosts_dir is not None:
            args += ["--hosts-dir", str(hosts_dir)]
        if user is not None:
            args += ["--user", user]
        if plain_http:
            args.append("--plain-http")
        if platform is not None:
            args += ["--platform", platform]
        args.append(ref)
        self.ctr(*args, timeout=timeout)
        return self.image_digest(ref)

    def image_digest(self, ref: str) -> str:
        """Target digest of an image in the store; raises KeyError if it is not there."""
        for image in self.images():
            if image["ref"] == ref:
                return image["digest"]
        raise KeyError(f"image {ref!r} not in containerd namespace {self.namespace!r}")

    def images(self) -> list[dict[str, str]]:
        """Images in the namespace as dicts with ref, type (media type) and digest."""
        out = self.ctr("images", "ls", timeout=30).stdout
        images = []
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 3:
                images.append({"ref": cols[0], "type": cols[1], "digest": cols[2]})
        return images

    def remove_image(self, ref: str) -> None:
        """Remove an image (content is garbage-collected), so the next pull hits the wire."""
        self.ctr("images", "rm", "--sync", ref, timeout=60)

    def restart(
        self, *, cri_registry: str | None = None, trusted_pem: bytes | None = None
    ) -> Containerd:
        """Start again with another CRI registry configuration (and trust store).

        The root is kept, so content already pulled stays (remove images to pull again).
        containerd reads its registry configuration and Go its trust store only at start.
        """
        self._stop_daemon()
        self.cri_registry = cri_registry
        if trusted_pem is not None:
            self.trusted_pem = trusted_pem
        return self.start()

    def _stop_daemon(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def stop(self) -> None:
        """Kill the daemon, unmount anything left under its root, and delete the temp dir."""
        self._stop_daemon()
        for mountpoint in _mounts_under(self.workdir):
            run(["umount", "-l", mountpoint], timeout=10, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Containerd:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _mounts_under(path: Path) -> list[str]:
    """Mount points below `path`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(path.resolve())
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if len(fields) > 4:
                mountpoint = fields[4].encode().decode("unicode_escape")
                if mountpoint == prefix or mountpoint.startswith(prefix + "/"):
                    found.append(mountpoint)
    return sorted(found, key=len, reverse=True)


@dataclass
class HostEndpoint:
    """One `[host."URL"]` entry of a hosts.toml (see containerd docs/hosts.md).

    `ca` may be PEM bytes (written next to hosts.toml) or a path (copied next to it).
    `client` is a list of (cert path, key path) pairs for mTLS.
    """

    url: str
    capabilities: Sequence[str] = ("pull", "resolve")
    ca: bytes | str | os.PathLike[str] | None = None
    skip_verify: bool | None = None
    override_path: bool | None = None
    header: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    client: Sequence[tuple[str, str]] = ()


def write_hosts_toml(
    hosts_dir: str | os.PathLike[str],
    host: str,
    *,
    server_url: str | None = None,
    endpoints: Sequence[HostEndpoint] = (),
    server_ca: bytes | str | os.PathLike[str] | None = None,
    server_skip_verify: bool | None = None,
) -> Path:
    """Write `hosts_dir/<host>/hosts.toml` for registry `host` (e.g. `127.0.0.1:5000`).

    `server_url` is the fallback/default upstream; `endpoints` are tried first, in order.
    Returns the path of the written file.

    containerd 1.6 rejects a hosts.toml without any `[host."..."]` table ("invalid `host`
    tree"), logs it, and silently falls back to defaults, which for 127.0.0.1 includes plain
    HTTP. So give at least one endpoint; a `server_url`-only file is written as asked.
    """
    host_dir = Path(hosts_dir) / host
    host_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    if server_url is not None:
        lines.append(f"server = {_toml_str(server_url)}")
    if server_ca is not None:
        lines.append(f"ca = {_toml_str(_place_ca(host_dir, server_ca, 'server'))}")
    if server_skip_verify is not None:
        lines.append(f"skip_verify = {_toml_value(server_skip_verify)}")
    for index, endpoint in enumerate(endpoints):
        lines += ["", *_endpoint_lines(host_dir, endpoint, f"host{index}")]
    path = host_dir / "hosts.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _endpoint_lines(host_dir: Path, endpoint: HostEndpoint, ca_stem: str) -> list[str]:
    """The `[host."URL"]` table (and its header sub-table) for one endpoint."""
    table = f"host.{_toml_str(endpoint.url)}"
    lines = [f"[{table}]", f"  capabilities = {_toml_value(list(endpoint.capabilities))}"]
    if endpoint.ca is not None:
        lines.append(f"  ca = {_toml_str(_place_ca(host_dir, endpoint.ca, ca_stem))}")
    if endpoint.skip_verify is not None:
        lines.append(f"  skip_verify = {_toml_value(endpoint.skip_verify)}")
    if endpoint.override_path is not None:
        lines.append(f"  override_path = {_toml_value(endpoint.override_path)}")
    if endpoint.client:
        pairs = ", ".join(f"[{_toml_str(c)}, {_toml_str(k)}]" for c, k in endpoint.client)
        lines.append(f"  client = [{pairs}]")
    if endpoint.header:
        lines += ["", f"  [{table}.header]"]
        for name, value in endpoint.header.items():
            values = [value] if isinstance(value, str) else list(value)
            lines.append(f"    {_toml_str(name)} = {_toml_value(values)}")
    return lines


def _place_ca(host_dir: Path, ca: bytes | str | os.PathLike[str], stem: str) -> str:
    """Put a CA file beside hosts.toml and return its absolute path."""
    target = host_dir / f"{stem}-ca.crt"
    if isinstance(ca, bytes):
        target.write_bytes(ca)
    else:
        shutil.copyfile(ca, target)
    return str(target)
