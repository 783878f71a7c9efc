"""The haproxy charms' side of the `reverseproxy` relation: what they make of our databags.

Reproduces the behaviour recorded in shared/reference/relations.md ("What the
haproxy charms do with these keys"), checked against the classic charm's
hooks.py and the ops operator's legacy module (read, not copied):

- a unit that publishes `services` contributes its stanza; stanzas of the same
  service are merged, their `servers` unioned (exact duplicates dropped);
- every other unit that publishes `port` (and has a `private-address`, which
  Juju always sets) becomes one more server, `<app>-<unit>-<port>`, of the
  service named after its application if there is one, else of the first
  service, with that service's `server_options`;
- the default service, `haproxy_service` on 0.0.0.0:80 with
  `maxconn 100 cookie S{i} check` for its servers, is always there in the
  classic charm (its `services` option's default) and, in the ops operator,
  only when no unit publishes `services`;
- with no server at all the charms write nothing: haproxy keeps the config
  it had.

`haproxy_cfg` lays the services out as those charms do (frontend
`haproxy-<port>`, the mode in both halves, frontend-only options in the
frontend, `{i}` in server options replaced by the server's index).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

DEFAULT_SERVICE: dict[str, Any] = {
    "service_name": "haproxy_service",
    "service_host": "0.0.0.0",
    "service_port": 80,
    "service_options": ["balance leastconn", "cookie SRVNAME insert"],
    "server_options": ["maxconn 100 cookie S{i} check"],
}
# Options the charms put in both halves, and those that only make sense in a frontend.
BOTH_HALVES = ("mode tcp", "option tcplog", "mode http", "option httplog")
FRONTEND_ONLY = (
    "acl",
    "bind",
    "capture",
    "default_backend",
    "http-request",
    "maxconn",
    "monitor",
    "option dontlognull",
    "option http-use-proxy-header",
    "option logasap",
    "rate-limit sessions",
    "redirect",
    "tcp-request",
    "timeout client",
    "use_backend",
)


@dataclass
class Service:
    """One service as the charms hold it before writing haproxy.cfg."""

    name: str
    host: str
    port: int
    options: list[str]
    server_options: list[str]
    servers: list[tuple[str, str, int, str]] = field(default_factory=list)


def services(
    databags: Mapping[str, Mapping[str, str]], *, flavour: str = "classic"
) -> list[Service] | None:
    """The services the charm would write from our units' databags (by unit name).

    `flavour` is "classic" (the classic charm with its default `services`
    option) or "ops" (the current operator). None: no server, nothing written.
    """
    stanzas = [bag["services"] for bag in databags.values() if "services" in bag]
    listed: list[dict[str, Any]] = []
    if flavour == "classic" or not stanzas:
        listed.append(dict(DEFAULT_SERVICE))
    for stanza in stanzas:
        listed += yaml.safe_load(stanza) or []
    by_name: dict[str, Service] = {}
    for entry in listed:
        service = by_name.setdefault(
            entry["service_name"],
            Service(
                entry["service_name"],
                entry.get("service_host", "0.0.0.0"),
                int(entry.get("service_port", 0)),
                _as_list(entry.get("service_options", [])),
                _as_list(entry.get("server_options", [])),
            ),
        )
        for name, address, port, options in entry.get("servers", []):
            server = (name, address, int(port), _joined(options))
            if server not in service.servers:
                service.servers.append(server)
    first = next(iter(by_name.values()))
    for unit, bag in databags.items():
        if "services" in bag or "port" not in bag or "private-address" not in bag:
            continue
        app = unit.rpartition("/")[0]
        targets = [by_name[n] for n in (f"{app}_service", app) if n in by_name] or [first]
        for service in targets:
            server_name = f"{unit.replace('/', '-')}-{bag['port']}"
            service.servers.append(
                (
                    server_name,
                    bag["private-address"],
                    int(bag["port"]),
                    _joined(service.server_options),
                )
            )
    if not any(service.servers for service in by_name.values()):
        return None
    return list(by_name.values())


def haproxy_cfg(services: list[Service], *, bind_host: str, stats_socket: str) -> str:
    """haproxy.cfg for `services`, each frontend on `bind_host` instead of 0.0.0.0.

    `stats_socket` is a path for haproxy's admin socket, where tests read the servers.
    """
    lines = [
        "global",
        "    log stderr format raw local0 info",
        f"    stats socket {stats_socket} mode 600 level admin",
        "defaults",
        "    log global",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
    ]
    for service in services:
        both = [o for o in BOTH_HALVES if any(opt.startswith(o) for opt in service.options)]
        front = [o for o in service.options if o.startswith(FRONTEND_ONLY) and o not in both]
        back = [o for o in service.options if not o.startswith(FRONTEND_ONLY) and o not in both]
        lines += [f"frontend haproxy-{service.port}", f"    bind {bind_host}:{service.port}"]
        lines += [f"    default_backend {service.name}", *(f"    {o}" for o in both + front)]
        lines += [f"backend {service.name}", *(f"    {o}" for o in both + back)]
        for i, (name, address, port, options) in enumerate(service.servers):
            lines.append(f"    server {name} {address}:{port} {options}".rstrip().format(i=i))
    return "\n".join(lines) + "\n"


def _as_list(options: str | list[str]) -> list[str]:
    """Options as a list: the charms split a string on commas."""
    if isinstance(options, str):
        return [o.strip() for o in options.split(",") if o.strip()]
    return list(options)


def _joined(options: str | list[str]) -> str:
    return options if isinstance(options, str) else " ".join(options)
