"""Owns every interaction with the registry workload on the unit.

It writes the files the registry reads (only when their content changed),
restarts the service only then, asks the registry itself whether it answers,
and reads its version. What to write is decided in `state/`.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from state import front
from state.access import AccessPlan
from state.config import CHARM_FILES
from state.front import FrontPlan
from state.maintenance import SERVICE_PATH, TIMER, TIMER_PATH, MaintenancePlan
from state.observability import (
    EXPORTER_PACKAGE,
    EXPORTER_SERVICE,
    EXPORTER_UNIT_PATH,
    TEXTFILE_NAME,
    UnitHealth,
    textfile_metrics,
)
from state.plan import RegistryPlan
from state.settings import CHARM_PASSWORD_PATH, CLIENT_CAS_PATH, METRICS_TEXTFILE_DIR
from workload.client_identity import identity_for
from workload.machine import INSTALL_ERRORS, Machine
from workload.maintenance import calendar_problem
from workload.registry_api import loopback_address

logger = logging.getLogger(__name__)

ANSWERED = (200, 401)
"""A registry answers its API base with 200, or 401 when auth is on."""

SERVICE = "docker-registry"
SERVICE_USER = "docker-registry"
PACKAGES = ("docker-registry", "skopeo")
READY_TIMEOUT = 30.0
# The registry (or haproxy, in front) checks the hash on every request, so
# the cost taxes every pull: 5 is what `htpasswd -B` uses (1.7 ms a check;
# cost 12 took 0.36 s a request).
BCRYPT_COST = 5
BCRYPT_PREFIX = b"$2b$%02d$" % BCRYPT_COST
HAPROXY_USER = re.compile(r"^\s*user '([^']*)' password '([^']*)'", re.MULTILINE)
WRITTEN_RECORD = "/etc/docker/registry/.written-by-charm"
"""The files the charm wrote at paths an option chose: the only such files it removes."""


@dataclass(frozen=True)
class StorageUsage:
    """How full the file system holding the images is (filesystem storage only)."""

    path: Path
    used: int
    free: int
    """Bytes the registry's (unprivileged) user may still write."""

    FILLING_PERCENT = 90
    FULL_FREE_BYTES = 64 << 20
    FULL_FREE_PERCENT = 1
    """Below both, pushes fail: a failed upload leaves its partial blob, filling the disk."""

    @property
    def percent_used(self) -> int:
        """Used space as `df` counts it (space reserved for root is not available)."""
        available = self.used + self.free
        return self.used * 100 // available if available else 100

    @property
    def filling(self) -> bool:
        """Past the warning threshold."""
        return self.percent_used >= self.FILLING_PERCENT

    @property
    def full(self) -> bool:
        """Too little space left for a push to succeed."""
        return self.free < min(
            self.FULL_FREE_BYTES, (self.used + self.free) * self.FULL_FREE_PERCENT // 100
        )

    def __str__(self) -> str:
        return f"{self.path} {self.percent_used}% used, {self.free / 1e6:.0f} MB free"


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
        self.exporter_problem = ""
        """Why the textfile exporter a collector needs could not be installed; "" if it could."""
        self._record_path = machine.root / WRITTEN_RECORD.lstrip("/")

    def _written(self) -> set[str]:
        if not self._record_path.is_file():
            return set()
        return set(self._record_path.read_text().splitlines())

    def _record(self, path: Path, written: bool) -> None:
        """Remember (or forget) that the charm wrote `path`."""
        record = self._written()
        updated = record | {str(path)} if written else record - {str(path)}
        if updated != record:
            self._record_path.parent.mkdir(parents=True, exist_ok=True)
            self._record_path.write_text("".join(f"{p}\n" for p in sorted(updated)))

    def _own(self, path: Path) -> bool:
        """Whether the charm may remove or change `path`: its own file, or one it wrote."""
        own = {self.machine.root / name.lstrip("/") for name in CHARM_FILES}
        return path in own or str(path) in self._written()

    def path_problems(self, plan: RegistryPlan) -> list[str]:
        """Why the TLS files cannot be written where the options say, before anything is."""
        if plan.tls is None:
            return []
        problems = []
        for option, path in (
            ("tls-cert-path", plan.tls_paths.cert),
            ("tls-key-path", plan.tls_paths.key),
            ("tls-ca-path", plan.tls_paths.ca),
        ):
            if path.is_symlink() or (path.exists() and not path.is_file()):
                problems.append(f"{option}: {path} is not a regular file")
            elif path.exists() and not self._own(path) and path.parent != plan.config_path.parent:
                problems.append(f"{option}: {path} exists and was not written by the charm")
        return problems

    def install(self) -> None:
        """Install the registry and skopeo; the registry starts only once configured."""
        self.machine.install_packages(PACKAGES, services=(SERVICE,))

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
        """Make the unit match `plan`; restart only what reads a file that changed.

        Returns whether a service was (re)started.
        """
        if plan.front is None:
            self._remove_front()
        else:
            self._prepare_front(plan.front)
        if plan.data_dir is not None:
            plan.data_dir.mkdir(parents=True, exist_ok=True)
            self._chown(plan.data_dir)
        changed = False
        for path, spec in self._files(plan).items():
            changed |= self._write(path, spec)
        # Read by every registry process, the mirrors' caches too.
        shared_changed = self._write_htpasswd(plan) | self._write(
            plan.token_root_certs_path,
            FileSpec(plan.token_auth.root_certs_pem) if plan.token_auth else None,
        )
        # systemd reads the environment file as root: it stays root's, mode 0600.
        shared_changed |= self._write(
            plan.environment_path,
            FileSpec(plan.environment, 0o600) if plan.environment else None,
        )
        # Read by the main registry or, with cache-mirrors, by haproxy.
        shared_changed |= self._write_client_cas(plan)
        changed |= shared_changed
        if self._write(plan.dropin_path, FileSpec(plan.dropin)):
            self.machine.daemon_reload()
            changed = True
        restarted = self._start_or_restart(
            SERVICE, changed, socket_path=self._socket_dir() / front.REGISTRY_SOCKET
        )
        if plan.front is not None:
            restarted |= self._apply_front(plan.front, plan.dropin, restart_all=shared_changed)
            # A reload returns before the new haproxy serves: a revoked user
            # must be refused by the time the hook ends.
            self._await_front_generation(plan)
        else:
            self._remove_sockets()
            self._apply_metrics_haproxy(plan)
        self._apply_exporter(plan)
        return restarted

    def _apply_metrics_haproxy(self, plan: RegistryPlan) -> None:
        """Without a front, haproxy runs only to serve `/metrics` on debug-port, if asked."""
        path = plan.haproxy_config_path
        if path is None:
            return
        if plan.metrics_haproxy_config is None:
            if self._own(path) and self.machine.running(front.HAPROXY_SERVICE):
                logger.info("no metrics frontend wanted: stopping haproxy")
                self.machine.stop(front.HAPROXY_SERVICE)
            return
        if shutil.which("haproxy") is None:
            self.machine.install_packages(front.PACKAGES, services=(front.HAPROXY_SERVICE,))
        changed = self._write(path, FileSpec(plan.metrics_haproxy_config))
        self._start_or_restart(front.HAPROXY_SERVICE, changed, reload=True)

    def _apply_exporter(self, plan: RegistryPlan) -> None:
        """Run the textfile exporter for a collector; stop and remove it when there is none.

        The package's own service (all collectors on :9100) stays disabled
        unless the operator had enabled it.
        """
        exporter = plan.observability.exporter if plan.observability else None
        path = plan.exporter_unit_path
        if path is None:
            return
        if exporter is None:
            if path.exists() and self._own(path):
                self.machine.stop(EXPORTER_SERVICE)
                self._write(path, None)
                self.machine.daemon_reload()
            return
        self.exporter_problem = ""
        if shutil.which(EXPORTER_PACKAGE) is None:
            try:
                self.machine.install_packages((EXPORTER_PACKAGE,), services=(EXPORTER_PACKAGE,))
            except INSTALL_ERRORS as e:
                # Only the textfile metrics are lost: the registry's own are scraped.
                logger.error("installing %s failed: %s", EXPORTER_PACKAGE, e)
                self.exporter_problem = (
                    f"cos-agent: cannot install {EXPORTER_PACKAGE} (storage, certificate and"
                    " upstream metrics missing); see juju debug-log"
                )
                return
        textfile_dir = self.machine.root / exporter.textfile_dir.lstrip("/")
        textfile_dir.mkdir(parents=True, exist_ok=True)
        textfile_dir.chmod(0o755)
        changed = self._write(path, FileSpec(exporter.unit))
        if changed:
            self.machine.daemon_reload()
        self._start_or_restart(EXPORTER_SERVICE, changed)

    def stop_exporter(self) -> None:
        """Stop the textfile exporter the charm runs (the unit is going away); files stay."""
        if (self.machine.root / EXPORTER_UNIT_PATH.lstrip("/")).exists():
            self.machine.stop(EXPORTER_SERVICE)

    def write_health_metrics(self, plan: RegistryPlan, timeout: float = 3.0) -> None:
        """Measure what the registry has no metric for; write it where the exporter reads it.

        Without a collector, the file is removed (only ours: the folder is shared).
        """
        exporter = plan.observability.exporter if plan.observability else None
        textfile_dir = self.machine.root / (
            exporter.textfile_dir if exporter else METRICS_TEXTFILE_DIR
        ).lstrip("/")
        path = textfile_dir / TEXTFILE_NAME
        if exporter is None:
            self._write(path, None)
            return
        usage = self.storage_usage(plan)
        mirrors = plan.front.mirrors if plan.front else ()
        health = UnitHealth(
            storage_used_bytes=usage.used if usage else None,
            storage_free_bytes=usage.free if usage else None,
            storage_healthy=not self.storage_failing(plan, timeout),
            certificate_not_after=(
                plan.tls.not_after.timestamp() if plan.tls and plan.tls.not_after else None
            ),
            upstreams_reachable={
                m.host: upstream_answers(m.upstream_url, plan.outbound_proxies, timeout)
                for m in mirrors
            },
        )
        self._write(path, FileSpec(textfile_metrics(health)))

    def _start_or_restart(
        self, service: str, changed: bool, *, reload: bool = False, socket_path: Path | None = None
    ) -> bool:
        """Start `service` if it is down; if what it reads changed, restart (or reload) it.

        `socket_path`: where the service listens behind the front, handed
        over before a restart (`_hand_over_socket`).
        """
        if not self.machine.running(service):
            logger.info("starting %s", service)
            self.machine.start(service)
            return True
        if changed and reload:
            logger.info("reloading %s: its configuration changed", service)
            self.machine.reload(service)
            return True
        if changed:
            logger.info("restarting %s: its configuration changed", service)
            if socket_path is not None:
                _hand_over_socket(socket_path)
            self.machine.restart(service)
            return True
        return False

    def _prepare_front(self, layout: FrontPlan) -> None:
        """Install haproxy and make the socket folder before any registry moves onto a socket.

        Otherwise the main registry, restarted onto its socket first, cannot
        bind it (`no such file or directory`) while apt installs haproxy.
        """
        if shutil.which("haproxy") is None:
            self.machine.install_packages(front.PACKAGES, services=(front.HAPROXY_SERVICE,))
        layout.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(layout.socket_dir, group="haproxy")
        layout.socket_dir.chmod(0o2750)
        self._write(layout.tmpfiles_path, FileSpec(layout.tmpfiles))

    def _apply_front(self, layout: FrontPlan, dropin: str, *, restart_all: bool) -> bool:
        """Run haproxy and one cache per mirror, restarting each only when its files changed."""
        units_changed = self._write(layout.unit_path, FileSpec(layout.unit))
        units_changed |= self._write(layout.dropin_path, FileSpec(dropin))
        if units_changed:
            self.machine.daemon_reload()
        restarted = False
        wanted = {m.config_path for m in layout.mirrors}
        for stale in self._mirror_configs() - wanted:
            self._stop_mirror(stale)
        for mirror in layout.mirrors:
            if mirror.data_dir is not None:
                mirror.data_dir.mkdir(parents=True, exist_ok=True)
                self._chown(mirror.data_dir.parent)
                self._chown(mirror.data_dir)
            changed = self._write(
                mirror.config_path, FileSpec(mirror.config_yaml, 0o600, secret=True)
            )
            changed |= units_changed or restart_all
            restarted |= self._start_or_restart(mirror.service, changed, socket_path=mirror.socket)
        # Root's only: it holds the users' password hashes (haproxy reads it as root).
        changed = self._write(layout.haproxy_config_path, FileSpec(layout.haproxy_config, 0o600))
        changed |= self._write(layout.lua_path, FileSpec(layout.lua))
        changed |= self._write(
            layout.pem_path, FileSpec(layout.pem, 0o600) if layout.pem else None
        )
        # A reload: the new haproxy takes over the listening socket, the old one
        # finishes the requests in flight.
        restarted |= self._start_or_restart(front.HAPROXY_SERVICE, changed, reload=True)
        return restarted

    def _await_front_generation(self, plan: RegistryPlan, timeout: float = READY_TIMEOUT) -> bool:
        """Wait until the front answers with the users of `plan` (after a reload)."""
        assert plan.front is not None
        loopback = self._loopback(plan)
        url = f"{self._base_url(plan)}{front.GENERATION_PATH}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with loopback.open(url, timeout=3) as response:
                    if response.read(64).decode() == plan.front.generation:
                        return True
            except (OSError, ValueError):
                pass
            if time.monotonic() >= deadline or not self.machine.running(front.HAPROXY_SERVICE):
                logger.warning("haproxy does not serve its new configuration yet")
                return False
            time.sleep(0.05)

    def _mirror_configs(self) -> set[Path]:
        """Config files of the mirror caches on the unit now."""
        config_dir = self.machine.root / front.MIRROR_CONFIG_DIR.lstrip("/")
        return set(config_dir.glob("*.yml"))

    def _stop_mirror(self, config_path: Path) -> None:
        """Stop a mirror's cache that is no longer wanted; its cached images stay."""
        self.machine.stop(front.mirror_service(config_path.stem))
        config_path.unlink()

    def _remove_front(self) -> None:
        """Back to the registry alone: stop haproxy and the caches, remove their files."""
        unit_path = self.machine.root / front.UNIT_PATH.lstrip("/")
        if not unit_path.exists():
            return
        logger.info("cache-mirrors is empty: stopping haproxy and the mirror caches")
        self.machine.stop(front.HAPROXY_SERVICE)
        for config_path in self._mirror_configs():
            self._stop_mirror(config_path)
        for path in (
            front.PEM_PATH,
            front.LUA_PATH,
            front.DROPIN_PATH,
            front.TMPFILES_PATH,
            front.UNIT_PATH,
        ):
            self._write(self.machine.root / path.lstrip("/"), None)
        for folder in (front.DROPIN_PATH.rpartition("/")[0], front.MIRROR_CONFIG_DIR):
            _remove_if_empty(self.machine.root / folder.lstrip("/"))
        self.machine.daemon_reload()

    def _socket_dir(self) -> Path:
        return self.machine.root / front.SOCKET_DIR.lstrip("/")

    def _remove_sockets(self) -> None:
        """Without the front, nothing listens on the sockets: remove them and their folder.

        Distribution 2.8 leaves its socket behind when it stops.
        """
        socket_dir = self._socket_dir()
        if not socket_dir.is_dir():
            return
        for socket_path in socket_dir.glob("*.sock"):
            socket_path.unlink()
        _remove_if_empty(socket_dir)

    def _files(self, plan: RegistryPlan) -> dict[Path, FileSpec | None]:
        """Files only the main registry reads; None means absent."""
        tls = plan.tls
        return {
            plan.config_path: FileSpec(plan.config_yaml, 0o600, secret=True),
            plan.tls_paths.cert: FileSpec(tls.cert_pem) if tls else None,
            plan.tls_paths.key: (FileSpec(tls.key_pem, 0o600, secret=True) if tls else None),
            plan.tls_paths.ca: (FileSpec(tls.ca_pem) if tls and tls.ca_pem else None),
        }

    def _write(self, path: Path, spec: FileSpec | None) -> bool:
        """Write (or remove) one file if it differs; return whether it changed.

        Only a file the charm wrote is removed or has its mode set.
        """
        if spec is None:
            if path.exists() and self._own(path):
                path.unlink()
                self._record(path, written=False)
                return True
            return False
        if path.is_file() and path.read_bytes() == spec.content.encode():
            if (path.stat().st_mode & 0o777) != spec.mode and self._own(path):
                path.chmod(spec.mode)
            if spec.secret:  # e.g. the same key, written by root before (a refresh)
                self._chown(path)
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
        self._record(path, written=True)
        return True

    def apply_maintenance(self, plan: MaintenancePlan | None) -> str | None:
        """Write (or remove) the maintenance timer; why not, if systemd rejects the schedule.

        systemd is asked only about a schedule not written yet. A timer with
        the same content is left alone: it neither restarts nor loses its next run.
        """
        paths = [self.machine.root / p.lstrip("/") for p in (TIMER_PATH, SERVICE_PATH)]
        wanted = plan.files if plan else {}
        timer = wanted.get(paths[0])
        unchecked = plan is not None and timer is not None and not _holds(paths[0], timer)
        if unchecked and plan is not None and (problem := calendar_problem(plan.schedule)):
            return problem
        changed = False
        for path in paths:
            content = wanted.get(path)
            changed |= self._write(path, FileSpec(content) if content is not None else None)
        if not changed:
            return None
        self.machine.daemon_reload()
        if plan is None:
            self.machine.stop(TIMER)
        elif self.machine.running(TIMER):
            self.machine.restart(TIMER)  # the new schedule
        else:
            self.machine.start(TIMER)
        return None

    def _write_client_cas(self, plan: RegistryPlan) -> bool:
        """Mutual TLS: trust the operator's CA and the charm's own (the actions' certificate)."""
        bundle = self.machine.root / CLIENT_CAS_PATH.lstrip("/")
        identity = identity_for(bundle)
        if plan.client_cas_path is None or plan.tls is None or not plan.tls.ca_pem:
            identity.remove()
            return self._write(bundle, None)
        content = f"{plan.tls.ca_pem.rstrip()}\n{identity.ca_pem().rstrip()}\n"
        return self._write(plan.client_cas_path, FileSpec(content))

    def _write_htpasswd(self, plan: RegistryPlan) -> bool:
        """Keep the htpasswd file while it admits the user at our cost; bcrypt salts differ."""
        path = plan.htpasswd_path
        auth = plan.htpasswd_auth
        if auth is None:
            return self._write(path, None)
        stored = {}
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) == 1:
                user, _, hashed = lines[0].partition(":")
                stored = {user: hashed}
        if _kept_hash(stored, auth.user, auth.password) is not None:
            return False
        hashed = _hash(auth.password)
        return self._write(path, FileSpec(f"{auth.user}:{hashed}\n", 0o600, secret=True))

    def charm_password(self) -> str:
        """The actions' own admin password on this unit, made the first time (root's, 0600)."""
        path = self.machine.root / CHARM_PASSWORD_PATH.lstrip("/")
        if path.is_file() and (password := path.read_text().strip()):
            return password
        password = secrets.token_urlsafe(24)
        self._write(path, FileSpec(password + "\n", 0o600))
        return password

    def password_hashes(self, access: AccessPlan | None) -> dict[str, str]:
        """A bcrypt hash of each user's password for the front's userlist.

        Hashes already in haproxy.cfg that still match are kept (bcrypt
        salts differ): the file, and haproxy, change only when a user does.
        """
        if access is None or not access.enforced_by_front:
            return {}
        path = self.machine.root / front.HAPROXY_CONFIG_PATH.lstrip("/")
        stored = dict(HAPROXY_USER.findall(path.read_text())) if path.is_file() else {}
        return {
            user.name: _kept_hash(stored, user.name, user.password) or _hash(user.password)
            for user in access.users
        }

    def _chown(self, path: Path, group: str | None = None) -> None:
        try:
            user = pwd.getpwnam(SERVICE_USER)
            gid = grp.getgrnam(group).gr_gid if group else user.pw_gid
        except KeyError:
            logger.warning("user %s or group missing; %s stays owned by root", SERVICE_USER, path)
            return
        os.chown(path, user.pw_uid, gid)

    def start(self) -> None:
        """Start the service (and enable it at boot)."""
        self.machine.start(SERVICE)

    def stop(self) -> None:
        """Stop the registry, the mirrors' caches and the charm's haproxy (front or metrics).

        Image data stays.
        """
        haproxy_config = self.machine.root / front.HAPROXY_CONFIG_PATH.lstrip("/")
        if self._own(haproxy_config) and self.machine.running(front.HAPROXY_SERVICE):
            self.machine.stop(front.HAPROXY_SERVICE)
        if (self.machine.root / front.UNIT_PATH.lstrip("/")).exists():
            for config_path in self._mirror_configs():
                self.machine.stop(front.mirror_service(config_path.stem))
        self.machine.stop(SERVICE)

    def storage_usage(self, plan: RegistryPlan) -> StorageUsage | None:
        """How full the images' file system is; None for object storage (or before install)."""
        if plan.data_dir is None:
            return None
        try:
            usage = shutil.disk_usage(plan.data_dir)
        except OSError:
            return None
        return StorageUsage(plan.data_dir, usage.used, usage.free)

    def running(self) -> bool:
        """Whether the service manager has the registry running."""
        return self.machine.running(SERVICE)

    def port_held_by_another(self, plan: RegistryPlan) -> bool:
        """Whether something else listens on the registry's port (neither it nor haproxy runs).

        The established charm's container, for one: it answers the probe
        while our registry cannot bind the port.
        """
        if any(self.machine.running(s) for s in (SERVICE, front.HAPROXY_SERVICE)):
            return False
        try:
            with socket.create_connection(("127.0.0.1", plan.port), timeout=1):
                return True
        except OSError:
            return False

    def answers(self, plan: RegistryPlan, timeout: float = 3.0) -> bool:
        """Whether the registry, and each mirror, answers its API base (200, or 401 with auth)."""
        return not self.not_answering(plan, timeout)

    def not_answering(self, plan: RegistryPlan, timeout: float = 3.0) -> list[str]:
        """The services that do not answer: this one, or else the mirrors' caches that don't.

        A cache exits while its upstream is unreachable; the others, and the
        main registry, keep serving.
        """
        loopback = self._loopback(plan)
        base = self._base_url(plan)
        if self._probe(loopback, f"{base}/v2/", timeout)[0] not in ANSWERED:
            return [SERVICE]
        mirrors = plan.front.mirrors if plan.front else ()
        return [
            m.service
            for m in mirrors
            if self._probe(loopback, f"{base}{m.prefix}/", timeout)[0] not in ANSWERED
        ]

    def _base_url(self, plan: RegistryPlan) -> str:
        """Our own registry on loopback (its own address when it is bound to one)."""
        return f"{plan.scheme}://{loopback_address(self.machine.listen_host)}:{plan.port}"

    def storage_failing(self, plan: RegistryPlan, timeout: float = 3.0) -> bool:
        """Whether the registry refuses every request because its storage fails its health check.

        The registry answers 503 to everything once the storage driver failed
        `health.storagedriver.threshold` checks in a row (a dead S3 endpoint,
        an unreadable disk).
        """
        status, body = self._probe(self._loopback(plan), f"{self._base_url(plan)}/v2/", timeout)
        return status == 503 and "health check failed" in body

    @staticmethod
    def _probe(
        loopback: urllib.request.OpenerDirector, url: str, timeout: float
    ) -> tuple[int | None, str]:
        """The HTTP status and body of a GET of our own registry on loopback; None: no answer."""
        try:
            with loopback.open(url, timeout=timeout) as response:
                return response.status, ""
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read(4096).decode(errors="replace")
        except (OSError, ValueError):
            return None, ""

    @staticmethod
    def _loopback(plan: RegistryPlan) -> urllib.request.OpenerDirector:
        """An HTTP client for our own registry: never through a proxy, no certificate check.

        Juju puts the model's proxy settings (http_proxy, https_proxy) in the
        hook's environment, often without no_proxy; loopback must not follow
        them. A liveness probe of our own process needs no verification (the
        certificate names the unit's addresses, not 127.0.0.1), so a plain
        context, without loading the system's CA store; with client
        certificates required, it presents the charm's own.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if plan.client_cas_path is not None:
            identity = identity_for(plan.client_cas_path)
            with contextlib.suppress(OSError):  # not made yet: the probe is refused
                context.load_cert_chain(identity.cert_path, identity.key_path)
        return urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

    def wait_until_answering(self, plan: RegistryPlan, timeout: float = READY_TIMEOUT) -> bool:
        """Poll /v2/ until the registry answers or `timeout` seconds pass.

        A mirror's cache that exited (its upstream unreachable) is not waited
        for: the registry serves without it, and the status names it.
        """
        deadline = time.monotonic() + timeout
        while True:
            silent = self.not_answering(plan)
            if SERVICE not in silent and not any(map(self.machine.running, silent)):
                return True
            if time.monotonic() >= deadline or not self.running():
                return False
            time.sleep(0.2)


def _hash(password: str) -> str:
    """A new bcrypt hash of `password` at our cost."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST, prefix=b"2b")).decode()


def _kept_hash(stored: dict[str, str], user: str, password: str) -> str | None:
    """`user`'s stored hash if it is ours (bcrypt at our cost) and matches `password`."""
    hashed = stored.get(user, "").encode()
    try:
        if hashed.startswith(BCRYPT_PREFIX) and bcrypt.checkpw(password.encode(), hashed):
            return hashed.decode()
    except ValueError:  # not a well-formed hash: make a new one
        pass
    return None


def upstream_answers(url: str, proxies: dict[str, str], timeout: float) -> bool:
    """Whether the registry at `url` answers its API base (any HTTP status), through `proxies`."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    try:
        with opener.open(f"{url.rstrip('/')}/v2/", timeout=timeout):
            return True
    except urllib.error.HTTPError as e:
        e.close()
        return True
    except (OSError, ValueError):
        return False


def _hand_over_socket(socket_path: Path, timeout: float = 5.0) -> None:
    """Take a registry's socket from the front, and see every connection on it accepted.

    On SIGTERM the registry closes its listener: a connection haproxy made
    that it had not accepted yet is reset, and the client gets a 502 (seen
    under load). Renamed, the socket takes no new connection (the front's
    requests wait in await-socket.lua for the next registry's); our own
    request answered through it was queued after every connection before it.
    """
    if not socket_path.is_socket():
        return
    draining = socket_path.with_name(f"{socket_path.name}.draining")
    socket_path.rename(draining)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout)
            probe.connect(str(draining))
            probe.sendall(b"GET / HTTP/1.0\r\n\r\n")
            probe.recv(1)  # any answer, or the end of the stream: accepted
    except OSError as e:
        logger.warning("%s: no answer before its restart (%s)", socket_path, e)
    finally:
        draining.unlink(missing_ok=True)


def _remove_if_empty(folder: Path) -> None:
    """Remove a folder the charm made once it holds nothing."""
    with contextlib.suppress(OSError):  # absent, or something else is in it
        folder.rmdir()


def _holds(path: Path, content: str) -> bool:
    """Whether the file exists with exactly `content`."""
    try:
        return path.read_text() == content
    except OSError:
        return False
