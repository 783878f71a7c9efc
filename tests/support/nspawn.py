"""A Debian systemd machine in a `systemd-nspawn` container, for the machine tier.

The root file system comes from `scripts/machine-rootfs` (debootstrapped once,
cached) and is copied fresh for each machine. It boots with its own systemd
as PID 1 and only a loopback interface (`--private-network`), so nothing it
serves is visible on the host's network, and the tests act inside it with
`nsenter`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from support.wait import wait_for

BOOT_TIMEOUT = 60.0


class MachineError(RuntimeError):
    """A command inside the machine failed; carries its output."""


DOCKER_CAPABLE = (
    # Docker inside: runc needs a writable cgroup tree (cgroup v2, delegated
    # to the container; on a cgroup v1 host the controllers are read-only) and
    # the keyring system calls nspawn filters out by default.
    ["--system-call-filter=@keyring bpf"],
    {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"},
)


class Machine:
    """One booted container; its root is `root` on the host."""

    def __init__(
        self,
        rootfs_cache: Path,
        workdir: Path,
        name: str,
        nspawn: tuple[list[str], dict[str, str]] = ([], {}),
    ):
        self.workdir = workdir
        self.root = workdir / "root"
        self.name = name
        self.nspawn_options, self.nspawn_environment = nspawn
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.pid = 0
        workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["cp", "-a", "--reflink=auto", str(rootfs_cache), str(self.root)], check=True
        )

    def boot(self) -> None:
        """Boot the container and wait until its systemd says it is up."""
        log = (self.workdir / "console.log").open("ab")
        self._nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "--boot",
                "--directory",
                str(self.root),
                "--machine",
                self.name,
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                "--private-network",
                *self.nspawn_options,
            ],
            env={**os.environ, **self.nspawn_environment},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.pid = wait_for(
            self._systemd_pid, timeout=BOOT_TIMEOUT, what="the container's systemd"
        )
        wait_for(
            lambda: (
                self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
                in ("running", "degraded")
            ),
            timeout=BOOT_TIMEOUT,
            interval=0.3,
            what=f"{self.name} to finish booting",
        )

    def _systemd_pid(self) -> int:
        """The PID (on the host) of the container's init, a child of systemd-nspawn."""
        assert self._nspawn is not None
        if self._nspawn.poll() is not None:
            raise MachineError(f"systemd-nspawn exited: {self.console()[-2000:]}")
        children = Path(f"/proc/{self._nspawn.pid}/task/{self._nspawn.pid}/children")
        for pid in children.read_text().split():
            if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                return int(pid)
        return 0

    def console(self) -> str:
        """What the container printed on its console."""
        return (self.workdir / "console.log").read_text(errors="replace")

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 300.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the container as root, with a clean environment."""
        environment = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            **(env or {}),
        }
        done = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--all", "--", "env", "-i"]
            + [f"{k}={v}" for k, v in environment.items()]
            + list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise MachineError(
                f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def popen(self, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[str]:
        """Start a long-running process inside the container, talking over pipes."""
        return subprocess.Popen(
            ["nsenter", "--target", str(self.pid), "--all", "--", "env", "-i"]
            + [f"{k}={v}" for k, v in env.items()]
            + list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.workdir / "driver.log").open("ab"),
            text=True,
        )

    def path(self, inside: str) -> Path:
        """Where a path of the container's root file system is on the host."""
        return self.root / inside.lstrip("/")

    def stat(self, path: str) -> tuple[str, str, int]:
        """Owner, group and permission bits of `path`, as the container names them."""
        owner, group, mode = self.run(["stat", "-c", "%U %G %a", path]).stdout.split()
        return owner, group, int(mode, 8)

    def active(self, unit: str) -> bool:
        return self.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0

    def enabled(self, unit: str) -> bool:
        return self.run(["systemctl", "is-enabled", "--quiet", unit], check=False).returncode == 0

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], check=False).returncode == 0

    def http(
        self,
        url: str,
        *,
        cafile: str | None = None,
        auth: tuple[str, str] | None = None,
        method: str = "GET",
    ) -> tuple[int, str]:
        """Send `method` to `url` from inside the container: status and body (0: unreachable)."""
        script = """
import base64, json, ssl, sys, urllib.error, urllib.request
url, cafile, auth, method = json.loads(sys.argv[1])
request = urllib.request.Request(url, method=method)
if auth:
    token = base64.b64encode(":".join(auth).encode()).decode()
    request.add_header("Authorization", "Basic " + token)
context = ssl.create_default_context(cafile=cafile) if cafile else None
try:
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        print(json.dumps([response.status, response.read().decode(errors="replace")]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode(errors="replace")]))
except OSError as e:
    print(json.dumps([0, str(e)]))
"""
        done = self.run(["python3", "-c", script, json.dumps([url, cafile, auth, method])])
        status, body = json.loads(done.stdout)
        return status, body

    def poweroff(self) -> None:
        """Shut the container down cleanly and wait for it (a reboot is poweroff, then boot)."""
        if self._nspawn is None or self._nspawn.poll() is not None:
            return
        self.run(["systemctl", "poweroff", "--no-block"], check=False)
        try:
            self._nspawn.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._nspawn.kill()
            self._nspawn.wait(timeout=10)

    def reboot(self) -> None:
        """Power off and boot the same root file system again (/run starts empty)."""
        self.poweroff()
        self.boot()

    def destroy(self) -> None:
        """Power off and delete the container's files."""
        self.poweroff()
        shutil.rmtree(self.workdir, ignore_errors=True)
