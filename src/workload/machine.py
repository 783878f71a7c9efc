"""The seam between the charm and the operating system it cannot test here.

Everything the charm does to the unit goes through real files under
`Machine.root`, real processes and real network calls, except package
installation and service control, which need apt and systemd. Those are the
`Machine`: `UbuntuMachine` on a unit; the tests substitute a local process
supervisor (see the README's development section).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from charmlibs import apt, systemd

logger = logging.getLogger(__name__)


class Machine(Protocol):
    """Package installation and service control on the unit."""

    root: Path
    """Where the unit's file system starts: "/" on a unit, a temporary tree in tests."""

    listen_host: str
    """Host the registry binds to: all addresses on a unit, loopback in tests."""

    def install_packages(self, packages: Sequence[str]) -> None:
        """Install (or keep) the given distribution packages."""
        ...

    def daemon_reload(self) -> None:
        """Make the service manager read changed unit files and drop-ins."""
        ...

    def start(self, service: str) -> None:
        """Enable and start a service."""
        ...

    def stop(self, service: str) -> None:
        """Stop a service and keep it from starting at boot."""
        ...

    def restart(self, service: str) -> None:
        """Restart a service (starting it if it was stopped)."""
        ...

    def reload(self, service: str) -> None:
        """Make a running service read its configuration again without dropping connections."""
        ...

    def running(self, service: str) -> bool:
        """Whether the service is running now."""
        ...

    def run_as(
        self, user: str, argv: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run a one-shot command as `user`, capturing its output as text."""
        ...


class UbuntuMachine:
    """The unit itself: apt and systemd."""

    root = Path("/")
    listen_host = ""

    def install_packages(self, packages: Sequence[str]) -> None:
        """Install packages with apt, refreshing the package index first."""
        apt.update()
        apt.add_package(list(packages))

    def daemon_reload(self) -> None:
        """Run `systemctl daemon-reload`."""
        systemd.daemon_reload()

    def start(self, service: str) -> None:
        """Enable and start `service`."""
        systemd.service_enable(service)
        systemd.service_start(service)

    def stop(self, service: str) -> None:
        """Stop and disable `service`."""
        systemd.service_stop(service)
        systemd.service_disable(service)

    def restart(self, service: str) -> None:
        """Restart `service`."""
        systemd.service_restart(service)

    def reload(self, service: str) -> None:
        """Reload `service` (haproxy: a new worker takes over the listeners), else restart it."""
        systemd.service_reload(service, restart_on_failure=True)

    def running(self, service: str) -> bool:
        """Whether `service` is active."""
        return systemd.service_running(service)

    def run_as(
        self, user: str, argv: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` as `user` (the charm runs as root)."""
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, user=user
        )
