"""Decides the Nagios checks NRPE runs on this unit and the files that register them.

As the established charm did on `nrpe-external-master`: for each check, a
`command[...]` line in `/etc/nagios/nrpe.d/check_<name>.cfg` (the `nrpe`
subordinate's daemon runs it) and a `define service` in
`/var/lib/nagios/export/service__<unit>_<name>.cfg` (the subordinate ships it
to the Nagios server). The established check keeps its name and command line;
TLS, mutual TLS, the mirrors and the certificate's expiry are what it missed.
No check is given a credential: each probes what answers without one.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

from state.plan import RegistryPlan
from state.settings import is_nagios_name, servicegroup_names

logger = logging.getLogger(__name__)

PLUGINS = "/usr/lib/nagios/plugins"
NRPE_DIR = "/etc/nagios/nrpe.d"
EXPORT_DIR = "/var/lib/nagios/export"
REGISTRY_CHECK = "check_http"
"""The established charm's check name: Nagios keeps the service's history under it."""
CERTIFICATE_CHECK = "docker_registry_certificate"
CERTIFICATE_DAYS = (14, 7)
"""Warning, then critical, this many days before the certificate expires."""
FILE_HEADER = """
#---------------------------------------------------
# This file is Juju managed
#---------------------------------------------------
"""


@dataclass(frozen=True)
class NagiosCheck:
    """One NRPE command and the Nagios service that runs it."""

    name: str
    description: str
    argv: tuple[str, ...]

    @property
    def command_line(self) -> str:
        """The command as NRPE runs it (through /bin/sh), every word quoted."""
        return shlex.join(self.argv)


@dataclass(frozen=True)
class NagiosSite:
    """Where the Nagios server files our services: the `nrpe` unit's names, else ours."""

    context: str
    """`nagios_context`, unless the nrpe unit sent its own `nagios_host_context`."""
    servicegroups: tuple[str, ...] = ()
    """`nagios_servicegroups`; empty: the context."""
    hostname: str | None = None
    """The nrpe unit's `nagios_hostname`; None: `<context>-<unit>`."""


def nagios_site(
    context: str,
    servicegroups: str,
    *,
    remote_context: str | None = None,
    remote_hostname: str | None = None,
) -> NagiosSite:
    """The names from the options, with the nrpe unit's own where it sent valid ones.

    The established charm let the nrpe unit's `nagios_host_context` win over
    `nagios_context`, and its `nagios_hostname` name the host. A value that is
    not a Nagios name is not written (it could add directives): ours is used.
    """
    for key, value in (
        ("nagios_host_context", remote_context),
        ("nagios_hostname", remote_hostname),
    ):
        if value and not is_nagios_name(value):
            logger.warning(
                "nrpe-external-master: ignoring %s %r, not a Nagios name", key, value[:64]
            )
    return NagiosSite(
        context=remote_context if remote_context and is_nagios_name(remote_context) else context,
        servicegroups=tuple(servicegroup_names(servicegroups)),
        hostname=remote_hostname if remote_hostname and is_nagios_name(remote_hostname) else None,
    )


def mirror_check_name(host: str) -> str:
    """The NRPE command name of `host`'s mirror (a `host:port` keeps its port)."""
    return f"docker_registry_mirror_{host.replace(':', '_')}"


def registry_checks(plan: RegistryPlan) -> tuple[NagiosCheck, ...]:
    """The registry on its port, each mirror's cache, and the certificate's expiry.

    All on loopback, where the registry (or haproxy in front) listens. `/`
    answers 200 whatever the auth (the front lets it through); a mirror's
    `/v2/` answers 401 when auth is on, unless anonymous pulls are. Under
    mutual TLS no request can be made without a client certificate, which
    Nagios is not given: the check is a TLS handshake (TLS 1.3 completes it
    before the server asks for the certificate), and mirrors are not checked
    one by one.
    """
    port = str(plan.port)
    http = (f"{PLUGINS}/check_http", "-I", "127.0.0.1", "-p", port)
    if plan.tls:
        http += ("-S",)
    if plan.client_auth:
        responding: tuple[str, ...] = (f"{PLUGINS}/check_tcp", "-H", "127.0.0.1", "-p", port, "-S")
    else:
        responding = (*http, "-e", " 200 OK", "-u", "/")
    checks = [NagiosCheck(REGISTRY_CHECK, "Verify docker-registry is responding", responding)]
    if plan.front and not plan.client_auth:
        locked = (
            not plan.access.anonymous_pull
            if plan.access
            else bool(plan.basic_auth or plan.token_auth)
        )
        answer = " 401 Unauthorized" if locked else " 200 OK"
        checks += [
            NagiosCheck(
                mirror_check_name(mirror.host),
                f"Verify the docker-registry mirror of {mirror.host} is responding",
                (*http, "-e", answer, "-u", f"{mirror.prefix}/"),
            )
            for mirror in plan.front.mirrors
        ]
    if plan.tls:
        warning, critical = CERTIFICATE_DAYS
        checks.append(
            NagiosCheck(
                CERTIFICATE_CHECK,
                f"Verify the docker-registry certificate is valid for {warning} more days",
                (*http, "-C", f"{warning},{critical}"),
            )
        )
    return tuple(checks)


def nagios_files(
    checks: tuple[NagiosCheck, ...], site: NagiosSite, *, unit_name: str, root: Path
) -> dict[Path, str]:
    """Each check's NRPE command file and Nagios service file, by path on the unit."""
    unit = unit_name.replace("/", "-")
    host_name = site.hostname or f"{site.context}-{unit}"
    servicegroups = ",".join(site.servicegroups) or site.context
    files: dict[Path, str] = {}
    for check in checks:
        command = root / NRPE_DIR.lstrip("/") / f"check_{check.name}.cfg"
        files[command] = f"{FILE_HEADER}command[{check.name}]={check.command_line}\n"
        service = root / EXPORT_DIR.lstrip("/") / f"service__{unit}_{check.name}.cfg"
        files[service] = (
            f"{FILE_HEADER}define service {{\n"
            f"    use                             active-service\n"
            f"    host_name                       {host_name}\n"
            f"    service_description             {check.description}\n"
            f"    check_command                   check_nrpe!{check.name}\n"
            f"    servicegroups                   {servicegroups}\n"
            "}\n"
        )
    return files
