"""The seam between the charm and the operating system it cannot test here.

Everything the charm does to the unit goes through real files under
`Machine.root`, real processes and real network calls, except package
installation and service control, which need apt and systemd. Those are the
`Machine`: `UbuntuMachine` on a unit; the tests substitute a local process
supervisor (see CONTRIBUTING.md, "The one seam").
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from charmlibs import apt, systemd

logger = logging.getLogger(__name__)


INSTALL_ERRORS = (apt.Error, subprocess.SubprocessError, RuntimeError)
"""What `install_packages` raises when apt cannot install (no archive, a held package)."""


class Machine(Protocol):
    """Package installation and service control on the unit."""

    root: Path
    """Where the unit's file system starts: "/" on a unit, a temporary tree in tests."""

    listen_host: str
    """Host the registry binds to: all addresses on a unit, loopback in tests."""

    def install_packages(self, packages: Sequence[str], services: Sequence[str] = ()) -> None:
        """Install (or keep) the given distribution packages.

        `services` are theirs: a package's postinst must not start them with its
        stock configuration, and the ones the charm has not enabled stay disabled.
        """
        ...

    def hold_packages(self, packages: Sequence[str], *, hold: bool) -> list[str]:
        """Hold the installed ones among `packages` in dpkg (`hold`), or release them; which.

        A package not installed is left alone: held, apt would refuse to install it.
        """
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

    def start_job(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], *, delay: float = 0.0
    ) -> None:
        """Run a command in the background as the service `name`: it outlives the hook.

        With `delay` (seconds), it starts that long from now instead.
        Raises OSError or subprocess.CalledProcessError if it cannot start.
        """
        ...

    def run_as(
        self, user: str, argv: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run a one-shot command as `user`, capturing its output as text."""
        ...

    def remove_container(self, name: str, image: str) -> bool:
        """Stop and remove the Docker container `name` if it runs `image`; whether it did.

        The established charm ran the registry that way (see `workload/established.py`).
        """
        ...


class UbuntuMachine:
    """The unit itself: apt and systemd."""

    root = Path("/")
    listen_host = ""

    def install_packages(self, packages: Sequence[str], services: Sequence[str] = ()) -> None:
        """Install packages with apt, refreshing the package index first.

        The services are masked (until reboot) meanwhile, so that no postinst
        starts them: Debian's docker-registry would serve its stock
        configuration, without auth, on :5000.
        """
        enabled = {service for service in services if _systemctl("is-enabled", service) == 0}
        for service in services:
            _systemctl("mask", "--runtime", service)
        try:
            apt.update()
            apt.add_package(list(packages))
        finally:
            for service in services:
                _systemctl("unmask", "--runtime", service)
                if service not in enabled:
                    _systemctl("disable", service)

    def hold_packages(self, packages: Sequence[str], *, hold: bool) -> list[str]:
        """`apt-mark hold` (or `unhold`) those of the packages dpkg has installed."""
        listed = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n", *packages],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        installed = sorted(
            name
            for name, _, status in (line.partition(" ") for line in listed.stdout.splitlines())
            if status == "installed" and name in packages
        )
        if installed:
            subprocess.run(
                ["apt-mark", "hold" if hold else "unhold", *installed],
                capture_output=True,
                timeout=120,
                check=True,
            )
        return installed

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

    def start_job(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], *, delay: float = 0.0
    ) -> None:
        """`systemd-run`: a transient service, its output in the journal, gone once it ends.

        With `delay`, a transient timer starts it (to the second, not systemd's default
        minute of accuracy).
        """
        timer = [f"--on-active={delay:.0f}s", "--timer-property=AccuracySec=1s"] if delay else []
        subprocess.run(
            [
                "systemd-run",
                f"--unit={name}",
                *timer,
                "--collect",
                "--quiet",
                "--property=Type=exec",
                *(f"--setenv={key}={value}" for key, value in env.items()),
                "--",
                *argv,
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )

    def run_as(
        self, user: str, argv: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` as `user` with its own group only and a clean environment.

        The charm runs as root: without this the command would keep gid 0,
        root's supplementary groups and `HOME=/root`.
        """
        account = pwd.getpwnam(user)
        environment = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": account.pw_dir,
            "USER": user,
            "LOGNAME": user,
            "LANG": "C.UTF-8",
        }
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            env=environment,
            cwd="/",
        )

    def remove_container(self, name: str, image: str) -> bool:
        """`docker rm -f name` when the docker CLI is here and the container runs `image`."""
        docker = shutil.which("docker")
        if docker is None:
            return False
        inspected = subprocess.run(
            [docker, "inspect", "--format", "{{.Config.Image}}", name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if inspected.returncode != 0:
            return False
        if inspected.stdout.strip() != image:
            logger.warning(
                "container %s runs %s, not %s: left alone", name, inspected.stdout.strip(), image
            )
            return False
        logger.info("removing the established charm's registry container %s", name)
        subprocess.run(
            [docker, "rm", "--force", name], capture_output=True, timeout=120, check=True
        )
        return True


def _systemctl(*args: str) -> int:
    """Run systemctl quietly; its exit status."""
    return subprocess.run(
        ["systemctl", "--quiet", *args],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "SYSTEMD_PAGER": ""},
    ).returncode
