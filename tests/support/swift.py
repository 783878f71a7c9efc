"""OpenStack Swift all-in-one on loopback, from Debian's packages: Swift and S3 for real.

One proxy (tempauth for the Swift API, the s3api middleware for S3) in front of
one account, container and object server, each on its own free port, with
memcached for tempauth's tokens. Rings (one device, one replica) and the
device folder live in a temp dir (`mount_check = false`: a plain folder, no
mount), as does every config file: nothing under /etc/swift is read or written.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import urllib.request

from ._proc import ManagedProcess, owned_tempdir, run
from .wait import free_port, port_open, wait_for

HOST = "127.0.0.1"
ACCOUNT = "test"
USER = "tester"
KEY = "testing"
REGION = "us-east-1"  # s3api's default location: SigV4 credential scopes name it
BACKENDS = ("account", "container", "object")


class SwiftAllInOne:
    """Start memcached and the four Swift servers; stop them all. A context manager."""

    def __init__(self, *, startup_timeout: float = 30.0):
        self.workdir = owned_tempdir(self, "swift-")
        self.port = free_port()
        self._ports = {name: free_port() for name in (*BACKENDS, "memcached")}
        self._startup_timeout = startup_timeout
        self._procs: list[ManagedProcess] = []

    @property
    def auth_url(self) -> str:
        """tempauth's v1 endpoint, what `storage-swift-authurl` takes."""
        return f"http://{HOST}:{self.port}/auth/v1.0"

    @property
    def username(self) -> str:
        """The Swift user, `account:user`; also the S3 access key."""
        return f"{ACCOUNT}:{USER}"

    @property
    def password(self) -> str:
        """The user's key; also the S3 secret key."""
        return KEY

    @property
    def endpoint(self) -> str:
        """The S3 endpoint (path-style)."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> SwiftAllInOne:
        try:
            self._write_config()
            self._build_rings()
            memcached = ["memcached", "-l", HOST, "-p", str(self._ports["memcached"]), "-U", "0"]
            # memcached refuses to run as root unless told which user to be.
            self._launch("memcached", memcached + (["-u", "root"] if os.geteuid() == 0 else []))
            for name in BACKENDS:
                self._launch(name, [f"swift-{name}-server", str(self.workdir / f"{name}.conf")])
            self._launch("proxy", ["swift-proxy-server", str(self.workdir / "proxy.conf")])
            for proc, port in zip(self._procs, [*self._ports.values(), self.port], strict=False):
                self._wait(proc, port)
            self._wait_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()
        self._procs = []
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SwiftAllInOne:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def logs(self) -> str:
        """Every server's output, for a failing test's report."""
        return "\n".join(f"--- {proc.name}\n{proc.log_tail()}" for proc in self._procs)

    def token(self) -> tuple[str, str]:
        """A tempauth token and the account's storage URL."""
        request = urllib.request.Request(
            self.auth_url, headers={"X-Auth-User": self.username, "X-Auth-Key": KEY}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["X-Auth-Token"], response.headers["X-Storage-Url"]

    def create_container(self, name: str) -> None:
        """A Swift container, which S3 sees as a bucket of the same name."""
        self._swift("PUT", name)

    def s3_charm_config(self, endpoint: str, **options: object) -> dict[str, object]:
        """The charm's S3 options for a new bucket here, reached at `endpoint`."""
        bucket = f"registry-{secrets.token_hex(4)}"
        self.create_container(bucket)
        return {
            "storage-s3-region": REGION,
            "storage-s3-bucket": bucket,
            "storage-s3-accesskey": self.username,
            "storage-s3-secretkey": self.password,
            "storage-s3-regionendpoint": endpoint,
            "storage-s3-forcepathstyle": True,
            **options,
        }

    def objects(self, container: str) -> list[str]:
        """The names of the objects in `container`."""
        listing = json.loads(self._swift("GET", f"{container}?format=json"))
        return [entry["name"] for entry in listing]

    def _swift(self, method: str, path: str) -> bytes:
        token, storage_url = self.token()
        request = urllib.request.Request(
            f"{storage_url}/{path}", method=method, headers={"X-Auth-Token": token}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def _write_config(self) -> None:
        devices = self.workdir / "devices"
        (devices / "d1").mkdir(parents=True)
        common = f"[DEFAULT]\nbind_ip = {HOST}\nswift_dir = {self.workdir}\nworkers = 0\n"
        (self.workdir / "swift.conf").write_text(
            "[swift-hash]\nswift_hash_path_suffix = tests\nswift_hash_path_prefix = tests\n"
            "[storage-policy:0]\nname = policy-0\ndefault = yes\n"
        )
        for name in BACKENDS:
            (self.workdir / f"{name}.conf").write_text(
                f"{common}bind_port = {self._ports[name]}\ndevices = {devices}\n"
                f"mount_check = false\n\n[pipeline:main]\npipeline = {name}-server\n\n"
                f"[app:{name}-server]\nuse = egg:swift#{name}\n"
            )
        # The proxy's pipeline, in order: each filter's entry point in the swift
        # egg and its settings. s3api turns an S3 request into a Swift one that
        # tempauth then checks; slo and dlo join the segments of S3 multipart
        # uploads and of the registry's Swift driver; copy serves S3 CopyObject.
        filters = {
            "catch_errors": ("catch_errors", ""),
            "gatekeeper": ("gatekeeper", ""),
            "proxy-logging": ("proxy_logging", ""),
            "cache": ("memcache", f"memcache_servers = {HOST}:{self._ports['memcached']}"),
            "listing_formats": ("listing_formats", ""),
            "s3api": ("s3api", f"location = {REGION}"),
            "tempauth": ("tempauth", f"user_{ACCOUNT}_{USER} = {KEY} .admin"),
            "copy": ("copy", ""),
            "slo": ("slo", ""),
            "dlo": ("dlo", ""),
        }
        sections = [
            f"[filter:{name}]\nuse = egg:swift#{egg}\n{extra}\n"
            for name, (egg, extra) in filters.items()
        ]
        pipeline = " ".join([*filters, "proxy-logging", "proxy-server"])
        (self.workdir / "proxy.conf").write_text(
            f"{common}bind_port = {self.port}\n\n[pipeline:main]\npipeline = {pipeline}\n\n"
            "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\n"
            + "\n".join(sections)
        )

    def _build_rings(self) -> None:
        for name in BACKENDS:
            builder = str(self.workdir / f"{name}.builder")
            run(["swift-ring-builder", builder, "create", "1", "1", "1"], timeout=30)
            device = f"r1z1-{HOST}:{self._ports[name]}/d1"
            run(["swift-ring-builder", builder, "add", device, "1"], timeout=30)
            # Exit 1 is a balance warning, expected with a single device.
            rebalance = run(["swift-ring-builder", builder, "rebalance"], timeout=30, check=False)
            if rebalance.returncode > 1:
                raise RuntimeError(f"swift-ring-builder rebalance {name}: {rebalance.stdout}")

    def _launch(self, name: str, argv: list[str]) -> None:
        proc = ManagedProcess(argv, name=name, log_path=self.workdir / f"{name}.log")
        self._procs.append(proc)
        proc.start()

    def _wait(self, proc: ManagedProcess, port: int) -> None:
        def ready() -> bool:
            proc.check_alive()
            return port_open(HOST, port)

        wait_for(
            ready, timeout=self._startup_timeout, interval=0.05, what=f"{proc.name} on {port}"
        )

    def _wait_answering(self) -> None:
        wait_for(
            self.token,
            timeout=self._startup_timeout,
            interval=0.1,
            what="the Swift proxy to issue a token",
            ignore=(OSError,),
        )
