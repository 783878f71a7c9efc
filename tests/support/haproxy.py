"""A real haproxy in the foreground with a caller-supplied config.

The charm may front its registry with haproxy; tests use this to put the same proxy in front
of a `RegistryProcess`. The config is validated with `haproxy -c` before starting.
"""

from __future__ import annotations

import csv
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from ._proc import ManagedProcess, ServerFixture, owned_tempdir, run
from .wait import WaitTimeoutError, port_open, wait_for

HAPROXY_BIN = "haproxy"


class HAProxy(ServerFixture):
    """Run `haproxy -f CFG -db` and wait until every port in `wait_ports` accepts TCP.

    `cfg` is the whole config text; the caller picks ports (use `free_port()`), which must be
    on 127.0.0.1. Use as a context manager.
    """

    def __init__(
        self,
        cfg: str,
        *,
        wait_ports: Sequence[int],
        host: str = "127.0.0.1",
        startup_timeout: float = 15.0,
        workdir: str | os.PathLike[str] | None = None,
    ):
        if not wait_ports:
            raise ValueError("wait_ports must name at least one frontend port")
        self.cfg = cfg
        self.wait_ports = list(wait_ports)
        self.host = host
        self._startup_timeout = startup_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else owned_tempdir(self, "haproxy-")
        self.cfg_path = self.workdir / "haproxy.cfg"
        self.log_path = self.workdir / "haproxy.log"
        self._proc: ManagedProcess | None = None

    def validate(self) -> None:
        """`haproxy -c -f CFG`; raises `CommandError` with haproxy's complaints."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cfg_path.write_text(self.cfg)
        run([HAPROXY_BIN, "-c", "-f", str(self.cfg_path)], timeout=30, cwd=self.workdir)

    def start(self) -> HAProxy:
        """Start and wait until ready; on any failure, clean up before re-raising."""
        if self._proc is not None:
            raise RuntimeError("haproxy already started")
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> HAProxy:
        self.validate()
        self._proc = ManagedProcess(
            [HAPROXY_BIN, "-f", str(self.cfg_path), "-db"],
            name="haproxy",
            log_path=self.log_path,
            cwd=self.workdir,
        )
        self._proc.start()
        proc = self._proc
        for port in self.wait_ports:

            def ready(port: int = port) -> bool:
                proc.check_alive()
                return port_open(self.host, port)

            try:
                wait_for(
                    ready,
                    timeout=self._startup_timeout,
                    interval=0.05,
                    what=f"haproxy to accept TCP on {self.host}:{port}",
                )
            except WaitTimeoutError as exc:
                raise WaitTimeoutError(f"{exc}\nhaproxy log:\n{proc.log_tail()}") from exc
        return self


def simple_proxy_cfg(
    frontend_port: int,
    backend: str,
    *,
    mode: str = "http",
    backend_tls_ca: str | None = None,
    frontend_cert: str | None = None,
    timeout_s: int = 60,
) -> str:
    """A minimal one-frontend/one-backend config, enough to put haproxy before a registry.

    `backend` is `HOST:PORT`. With `backend_tls_ca`, haproxy talks TLS to the backend and
    verifies it; with `frontend_cert` (cert+key bundle path), the frontend terminates TLS.
    Logs go to stderr, i.e. to the helper's log file.
    """
    bind = f"127.0.0.1:{frontend_port}"
    if frontend_cert:
        bind += f" ssl crt {frontend_cert}"
    server = f"server upstream {backend}"
    if backend_tls_ca:
        server += f" ssl verify required ca-file {backend_tls_ca}"
    option_log = "option httplog" if mode == "http" else "option tcplog"
    return f"""global
    log stderr format raw local0 info
    maxconn 256

defaults
    mode {mode}
    log global
    {option_log}
    timeout connect 5s
    timeout client {timeout_s}s
    timeout server {timeout_s}s

frontend fe
    bind {bind}
    default_backend be

backend be
    {server}
"""


def servers_by_backend(stats_socket: str | os.PathLike[str]) -> dict[str, list[dict[str, str]]]:
    """Each backend's servers as the running haproxy holds them (`show stat` on its socket).

    Each server is its stat row: `svname`, `status` (UP, DOWN, ...), `bck` ("1": backup).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(stats_socket))
        sock.sendall(b"show stat\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode().lstrip("# ")
    backends: dict[str, list[dict[str, str]]] = {}
    for row in csv.DictReader(text.splitlines()):
        if row["svname"] == "BACKEND":
            backends.setdefault(row["pxname"], [])
        elif row["svname"] != "FRONTEND":
            backends.setdefault(row["pxname"], []).append(row)
    return backends
