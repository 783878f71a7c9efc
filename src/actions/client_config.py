"""Client configuration for this registry, for nodes that Juju does not configure.

The `client-config` action prints it: containerd `hosts.toml` files (the
registry itself, and the registry as a mirror of upstream hosts), Docker's
`daemon.json` when the registry serves plain HTTP, and the JSON list the
containerd charm's `custom_registries` option takes. Everything comes from
the plan (`netloc`, `url`, the CA, the mirrors), so clients are told what
the registry really serves. No password is ever part of it.
"""

from __future__ import annotations

import base64
import json
import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit

import jinja2

from state.mirrors import HOST
from state.plan import RegistryPlan

DEFAULT_HOSTS_DIR = "/etc/containerd/certs.d"
# containerd's own default endpoint for docker.io images.
KNOWN_SERVERS = {"docker.io": "https://registry-1.docker.io"}


class ClientConfigError(ValueError):
    """An action parameter is wrong; the message says which and why."""


@dataclass(frozen=True)
class HostsEntry:
    """One registry host's folder in containerd's hosts directory."""

    host: str
    server: str
    endpoint: str
    mirror: bool
    override_path: bool = False


def _entries(plan: RegistryPlan, mirror_of: str) -> list[HostsEntry]:
    """The registry itself, each upstream it mirrors, and `mirror_of` if asked."""
    entries = [HostsEntry(plan.netloc, plan.url, plan.url, mirror=False)]
    mirrored = {m.host: m.upstream_url for m in plan.front.mirrors} if plan.front else {}
    for host, upstream_url in mirrored.items():
        entries.append(
            HostsEntry(
                host, upstream_url, f"{plan.url}/v2/{host}", mirror=True, override_path=True
            )
        )
    if mirror_of and mirror_of not in mirrored and mirror_of != plan.netloc:
        # The registry's root stands in for the upstream: its pull-through
        # cache (cache-remoteurl), or images pushed under their own names.
        server = KNOWN_SERVERS.get(mirror_of, f"https://{mirror_of}")
        if plan.cache_url and urlsplit(plan.cache_url).netloc == mirror_of:
            server = plan.cache_url
        entries.append(HostsEntry(mirror_of, server, plan.url, mirror=True))
    return entries


def render(
    plan: RegistryPlan,
    *,
    templates: jinja2.Environment,
    hosts_dir: str = DEFAULT_HOSTS_DIR,
    mirror_of: str = "",
) -> dict[str, str]:
    """The action's results: every file a node needs, and the JSON snippets."""
    if not posixpath.isabs(hosts_dir):
        raise ClientConfigError(f"hosts-dir must be an absolute path, not {hosts_dir!r}")
    if mirror_of and not HOST.match(mirror_of):
        raise ClientConfigError(
            f"mirror-of must be a registry host such as docker.io, not {mirror_of[:64]!r}"
        )
    ca_pem = plan.tls.ca_pem if plan.tls else None
    template = templates.get_template("hosts.toml.j2")
    files: dict[str, str] = {}
    for entry in _entries(plan, mirror_of):
        ca = posixpath.join(hosts_dir, entry.host, "ca.crt") if ca_pem else None
        files[f"{entry.host}/hosts.toml"] = template.render(
            hosts_dir=hosts_dir,
            host=entry.host,
            mirror=entry.mirror,
            server=entry.server,
            endpoint=entry.endpoint,
            capabilities=["pull", "resolve"] if entry.mirror else ["pull", "resolve", "push"],
            ca=ca,
            override_path=entry.override_path,
        )
        if ca_pem:
            files[f"{entry.host}/ca.crt"] = ca_pem
    results = {
        "hosts-dir": hosts_dir,
        "hosts-toml": files[f"{mirror_of or plan.netloc}/hosts.toml"],
        "files": json.dumps(files, indent=2, sort_keys=True),
        "custom-registries": json.dumps(_custom_registries(plan, ca_pem, mirror_of)),
    }
    if plan.tls is None:
        results["docker-daemon-json"] = json.dumps({"insecure-registries": [plan.netloc]})
    return results


def _custom_registries(plan: RegistryPlan, ca_pem: str | None, mirror_of: str) -> list[dict]:
    """The containerd charm's `custom_registries`: host -> endpoint URL, CA as base64.

    The password is left out on purpose: add "password" to each entry by hand.
    """
    registries = []
    for entry in _entries(plan, mirror_of):
        registry: dict[str, str] = {"host": entry.host, "url": entry.endpoint}
        if plan.basic_auth:
            registry["username"] = plan.basic_auth.user
        if ca_pem:
            registry["ca_file"] = base64.b64encode(ca_pem.encode()).decode()
        registries.append(registry)
    return registries
