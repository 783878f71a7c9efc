"""Owns every interaction with the registry workload on the unit.

It writes the files the registry reads (only when their content changed),
restarts the service only then, asks the registry itself whether it answers,
and reads its version. What to write is decided elsewhere (`plan.py`).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from machine import Machine
from plan import RegistryPlan

logger = logging.getLogger(__name__)

SERVICE = "docker-registry"
SERVICE_USER = "docker-registry"
PACKAGES = ("docker-registry", "skopeo")
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class FileSpec:
    """A file's wanted content and mode; secret files belong to the service user."""

    content: str
    mode: int = 0o644
    secret: bool = False


class Registry:
    """The registry service on this unit."""

    def __init__(self, machine: Machine):
        self.machine = machine

    def install(self) -> None:
        """Install the registry and skopeo from the Ubuntu archive."""
        self.machine.install_packages(PACKAGES)

    def version(self) -> str | None:
        """The registry's version, e.g. "2.8.2", or None when it is not installed."""
        binary = shutil.which("docker-registry")
        if binary is None:
            return None
        try:
            out = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.search(r"\s[v]?(\d+\.\d+\.\d+)", out)
        return match.group(1) if match else None

    def apply(self, plan: RegistryPlan) -> bool:
        """Make the unit match `plan`; restart only if what the registry reads changed.

        Returns whether the service was (re)started.
        """
        if plan.data_dir is not None:
            plan.data_dir.mkdir(parents=True, exist_ok=True)
            self._chown(plan.data_dir)
        changed = False
        for path, spec in self._files(plan).items():
            changed |= self._write(path, spec)
        changed |= self._write_htpasswd(plan)
        if self._write(plan.dropin_path, FileSpec(plan.dropin)):
            self.machine.daemon_reload()
            changed = True
        if not self.running():
            logger.info("starting the registry")
            self.machine.start(SERVICE)
            return True
        if changed:
            logger.info("restarting the registry: its configuration changed")
            self.machine.restart(SERVICE)
            return True
        return False

    def _files(self, plan: RegistryPlan) -> dict[Path, FileSpec | None]:
        """Every file the registry reads besides htpasswd; None means absent."""
        tls = plan.tls
        return {
            plan.config_path: FileSpec(plan.config_yaml, 0o600, secret=True),
            plan.token_root_certs_path: (
                FileSpec(plan.token_auth.root_certs_pem) if plan.token_auth else None
            ),
            plan.tls_paths.cert: FileSpec(tls.cert_pem) if tls else None,
            plan.tls_paths.key: (FileSpec(tls.key_pem, 0o600, secret=True) if tls else None),
            plan.tls_paths.ca: (FileSpec(tls.ca_pem) if tls and tls.ca_pem else None),
        }

    def _write(self, path: Path, spec: FileSpec | None) -> bool:
        """Write (or remove) one file if it differs; return whether it changed."""
        if spec is None:
            if path.exists():
                path.unlink()
                return True
            return False
        if path.exists() and path.read_text() == spec.content:
            if (path.stat().st_mode & 0o777) != spec.mode:
                path.chmod(spec.mode)
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spec.mode)
        with os.fdopen(fd, "w") as f:
            f.write(spec.content)
        os.chmod(tmp, spec.mode)
        if spec.secret:
            self._chown(tmp)
        os.replace(tmp, path)
        return True

    def _write_htpasswd(self, plan: RegistryPlan) -> bool:
        """Keep the htpasswd file if it already admits the user; bcrypt salts differ per run."""
        path = plan.htpasswd_path
        auth = plan.basic_auth
        if auth is None:
            return self._write(path, None)
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) == 1 and lines[0].startswith(f"{auth.user}:"):
                stored = lines[0].split(":", 1)[1].encode()
                if bcrypt.checkpw(auth.password.encode(), stored):
                    return False
        hashed = bcrypt.hashpw(auth.password.encode(), bcrypt.gensalt()).decode()
        return self._write(path, FileSpec(f"{auth.user}:{hashed}\n", 0o600, secret=True))

    def _chown(self, path: Path) -> None:
        try:
            user = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            logger.warning("user %s missing; %s stays owned by root", SERVICE_USER, path)
            return
        os.chown(path, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        """Start the service (and enable it at boot)."""
        self.machine.start(SERVICE)

    def stop(self) -> None:
        """Stop the service (and disable it at boot); image data stays."""
        self.machine.stop(SERVICE)

    def running(self) -> bool:
        """Whether the service manager has the registry running."""
        return self.machine.running(SERVICE)

    def answers(self, plan: RegistryPlan, timeout: float = 3.0) -> bool:
        """Whether the registry answers its API base, /v2/ (200, or 401 with auth on)."""
        url = f"{plan.scheme}://127.0.0.1:{plan.port}/v2/"
        context = ssl.create_default_context()
        # A liveness probe of our own process on loopback: the certificate
        # names the unit's addresses, not 127.0.0.1.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
                return response.status == 200
        except urllib.error.HTTPError as e:
            return e.code == 401
        except (OSError, ValueError):
            return False

    def wait_until_answering(self, plan: RegistryPlan, timeout: float = READY_TIMEOUT) -> bool:
        """Poll /v2/ until the registry answers or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            if self.answers(plan):
                return True
            if time.monotonic() >= deadline or not self.running():
                return False
            time.sleep(0.2)
