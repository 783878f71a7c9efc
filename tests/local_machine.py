"""A local stand-in for the unit's apt and systemd: the tests' one seam object.

`LocalMachine` implements the charm's `Machine` protocol by running each
service as a child process of the test, under a temporary root, bound to
loopback. Everything else the charm does (files, the registry process,
network calls) is real.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

SERVICE_COMMANDS = {
    "docker-registry": ["docker-registry", "serve", "{root}/etc/docker/registry/config.yml"],
    # A systemd template unit: "{instance}" is what follows the "@".
    "docker-registry-mirror@": [
        "docker-registry",
        "serve",
        "{root}/etc/docker/registry/mirrors/{instance}.yml",
    ],
    # Master-worker mode, as Ubuntu's haproxy.service runs it (-Ws): SIGUSR2 reloads.
    "haproxy": ["haproxy", "-W", "-f", "{root}/etc/haproxy/haproxy.cfg", "-db"],
}


class LocalMachine:
    """Runs services as child processes instead of systemd units."""

    listen_host = "127.0.0.1"

    @classmethod
    @contextlib.contextmanager
    def temporary(cls) -> Iterator[LocalMachine]:
        """A unit root in a temporary folder; services it starts are stopped afterwards.

        The path is short: with cache-mirrors the registries listen on unix
        sockets under it, and a socket path has at most 107 bytes.
        """
        machine = cls(Path(tempfile.mkdtemp(prefix="unit-", dir="/tmp")))
        try:
            yield machine
        finally:
            machine.close()
            shutil.rmtree(machine.root, ignore_errors=True)

    def __init__(self, root: Path):
        self.root = root
        self.installed: list[str] = []
        self.held: set[str] = set()
        self.launches: collections.Counter[str] = collections.Counter()
        self.reloads: collections.Counter[str] = collections.Counter()
        self.terminations: list[tuple[str, float]] = []
        """(service, time.monotonic()) of each SIGTERM: when a restart began."""
        self.daemon_reloads = 0
        self.commands: list[tuple[str, list[str]]] = []
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self.timers: set[str] = set()
        """Timers started (systemd would fire them; tests emit their event)."""
        self.delayed_jobs: dict[str, tuple[float, list[str]]] = {}
        """Delayed jobs by name: (delay, argv); tests emit the event they would dispatch."""

    def install_packages(self, packages: Sequence[str], services: Sequence[str] = ()) -> None:
        """Check that the packages' programs are here (CI installs them with apt)."""
        for package in packages:
            if shutil.which(package) is None:
                raise RuntimeError(f"{package} is not installed on this machine")
        self.installed.extend(packages)

    def hold_packages(self, packages: Sequence[str], *, hold: bool) -> list[str]:
        """Keep the dpkg holds the charm asks for, of packages whose program is here."""
        installed = [package for package in packages if shutil.which(package)]
        if hold:
            self.held.update(installed)
        else:
            self.held.difference_update(installed)
        return installed

    def daemon_reload(self) -> None:
        """Count reloads; drop-ins are read afresh at each launch."""
        self.daemon_reloads += 1

    def start(self, service: str) -> None:
        """Launch the service unless it runs already."""
        if service.endswith(".timer"):
            self.timers.add(service)
            return
        if not self.running(service):
            self._launch(service)

    def stop(self, service: str) -> None:
        """Terminate the service's process and wait for it as long as its TimeoutStopSec."""
        if service.endswith(".timer"):
            self.timers.discard(service)
            return
        process = self._processes.pop(service, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        self.terminations.append((service, time.monotonic()))
        timeouts = re.findall(r"^TimeoutStopSec=(\d+)s$", self._dropins_text(service), re.M)
        try:
            process.wait(timeout=int(timeouts[-1]) if timeouts else 10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self, service: str) -> None:
        """Stop, then launch again."""
        self.stop(service)
        self.start(service)

    def reload(self, service: str) -> None:
        """haproxy's reload (systemd's ExecReload sends SIGUSR2 to the master); others restart."""
        if service != "haproxy" or not self.running(service):
            self.restart(service)
            return
        self.reloads[service] += 1
        self._processes[service].send_signal(signal.SIGUSR2)

    def running(self, service: str) -> bool:
        """Whether the service's process is alive."""
        if service.endswith(".timer"):
            return service in self.timers
        process = self._processes.get(service)
        return process is not None and process.poll() is None

    def start_job(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], *, delay: float = 0.0
    ) -> None:
        """A child process in a session of its own, as systemd-run's transient service.

        A delayed job is only recorded in `delayed_jobs`: the test decides when it fires.
        """
        if delay:
            self.delayed_jobs[name] = (delay, list(argv))
            return
        self.launches[name] += 1
        log_path = self._log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self._processes[name] = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )

    def wait(self, service: str, timeout: float) -> int:
        """Wait for the service's process to end (a job); its exit status."""
        return self._processes[service].wait(timeout=timeout)

    def run_as(
        self, user: str, argv: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` as the test's own user: the temporary root is not the service user's."""
        self.commands.append((user, list(argv)))
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def remove_container(self, name: str, image: str) -> bool:
        """There is no Docker here: the machine tier plays the established unit."""
        return False

    def kill(self, service: str) -> None:
        """Make the service die as if it crashed (for tests of recovery)."""
        process = self._processes[service]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def process_groups(self) -> set[int]:
        """The process group of each running service (for measuring their CPU time)."""
        return {p.pid for p in self._processes.values() if p.poll() is None}

    def close(self) -> None:
        """Stop every service this machine started."""
        for service in list(self._processes):
            self.stop(service)

    def environment(self, service: str) -> dict[str, str]:
        """The Environment= settings of the service's drop-ins, as systemd would apply them."""
        env: dict[str, str] = {}
        text = self._dropins_text(service)
        for match in re.finditer(r'^Environment="([^=]+)=(.*)"$', text, re.M):
            env[match[1]] = match[2].replace('\\"', '"').replace("%%", "%")
        for match in re.finditer(r"^EnvironmentFile=-?(/.*)$", text, re.M):
            env.update(self._environment_file(self.root / match[1].lstrip("/")))
        return env

    def _dropins_text(self, service: str) -> str:
        """The service's drop-ins, in the order systemd reads them (template unit's first)."""
        template, at, _ = service.partition("@")
        units = [f"{template}@", service] if at else [service]
        folders = [self.root / f"etc/systemd/system/{unit}.service.d" for unit in units]
        return "".join(
            path.read_text() for folder in folders for path in sorted(folder.glob("*.conf"))
        )

    @staticmethod
    def _environment_file(path: Path) -> dict[str, str]:
        """`NAME="value"` lines with backslash escapes, as systemd reads an EnvironmentFile."""
        lines = path.read_text().splitlines() if path.exists() else []
        return {
            match[1]: re.sub(r"\\(.)", r"\1", match[2])
            for line in lines
            if (match := re.fullmatch(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', line))
        }

    def _exec_start(self, service: str) -> list[str]:
        """The command line of the unit file the charm wrote for `service`."""
        unit = (self.root / f"etc/systemd/system/{service}.service").read_text()
        match = re.search(r"^ExecStart=(.*)$", unit, re.M)
        if match is None:
            raise RuntimeError(f"{service}.service has no ExecStart")
        return shlex.split(match[1].replace("{", "{{").replace("}", "}}"))

    def log(self, service: str) -> str:
        """What the service printed so far."""
        path = self._log_path(service)
        return path.read_text(errors="replace") if path.exists() else ""

    def _log_path(self, service: str) -> Path:
        return self.root / f"var/log/{service}.log"

    def _launch(self, service: str) -> None:
        self.launches[service] += 1
        template, at, instance = service.partition("@")
        command = SERVICE_COMMANDS.get(f"{template}@" if at else service)
        if command is None:  # a unit the charm writes whole: run its ExecStart
            command = self._exec_start(service)
        argv = [part.format(root=self.root, instance=instance) for part in command]
        log_path = self._log_path(service)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self._processes[service] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.environment(service)},
                start_new_session=True,
            )
