"""Client configuration for this registry, for nodes that Juju does not configure.

The `client-config` action prints it: containerd `hosts.toml` files (the
registry itself, and the registry as a mirror of upstream hosts, at its root
or under a namespace), k3s/RKE2 `registries.yaml` (a namespace is a
`rewrite`), CRI-O/podman `registries.conf` (v2; a namespace is the mirror's
location) with its `auth.json`, Docker's `daemon.json` (plain HTTP, and
docker.io's mirror when at the registry's root), a Docker `config.json`,
the containerd `config.toml` credentials snippet, and the two lists the
containerd charm's `custom_registries` option takes (for nodes related to
this registry, and for nodes that are not).
Everything comes from the plan (`netloc`, `url`, the CA, the mirrors), so
clients are told what the registry really serves. The password is printed
only when the operator asks for it (`include-password=true`).

How the containerd charm renders `custom_registries` decides their shape:
each entry becomes `registry.mirrors."<host>"` with `endpoint = ["<url>"]`,
and its credentials and CA go under `registry.configs."<url>"`, while
containerd looks `configs` up by the endpoint's `host:port`. So credentials
and CA only work on an entry whose `url` is the bare netloc, the same table
the docker-registry relation writes; mirror entries carry none and reuse it.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import jinja2

from state.mirrors import HOST
from state.plan import RegistryPlan

DEFAULT_HOSTS_DIR = "/etc/containerd/certs.d"
# Where registries-yaml (k3s, RKE2) expects the CA: a folder of ours under /etc/rancher.
RANCHER_CA_DIR = "/etc/rancher/docker-registry"
# Where CRI-O, podman and skopeo look for a registry's CA on their own.
CONTAINERS_CERTS_DIR = "/etc/containers/certs.d"
# containerd's own default endpoint for docker.io images.
KNOWN_SERVERS = {"docker.io": "https://registry-1.docker.io"}
# A repository path as the registry accepts it (distribution's reference grammar).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAMESPACE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


class ClientConfigError(ValueError):
    """An action parameter is wrong; the message says which and why."""


@dataclass(frozen=True, kw_only=True)
class ClientConfigParams:
    """The client-config action's parameters (defaults as in actions.yaml)."""

    mirror_of: str = ""
    namespace: str = ""
    hosts_dir: str = DEFAULT_HOSTS_DIR
    include_password: bool = False


@dataclass(frozen=True)
class HostsEntry:
    """One registry host's folder in containerd's hosts directory."""

    host: str
    server: str
    endpoint: str
    mirror: bool
    override_path: bool = False
    namespace: str = ""
    """The repository path under which the registry serves `host`'s images ("": its root)."""


def parse_mirror_of(value: str) -> list[str]:
    """The upstream hosts of `mirror-of`, comma or whitespace separated, in order."""
    hosts: list[str] = []
    for host in value.replace(",", " ").split():
        if not HOST.match(host):
            raise ClientConfigError(
                f"mirror-of: {host[:64]!r} is not a registry host such as docker.io or gcr.io"
            )
        if host not in hosts:
            hosts.append(host)
    return hosts


def parse_namespace(value: str, mirror_of: list[str]) -> str:
    """The repository path images of `mirror_of` were pushed under (push namespace=...)."""
    namespace = value.strip().strip("/")
    if namespace and not NAMESPACE.match(namespace):
        raise ClientConfigError(
            f"namespace: {namespace[:64]!r} is not a repository path"
            " (lowercase letters, digits, . _ - and /)"
        )
    if namespace and not mirror_of:
        raise ClientConfigError("namespace: name the hosts it mirrors in mirror-of, e.g. gcr.io")
    return namespace


def _upstream_server(plan: RegistryPlan, host: str) -> str:
    """Where containerd falls back to for `host`'s images when the mirror cannot serve."""
    if plan.cache_url and urlsplit(plan.cache_url).netloc == host:
        return plan.cache_url
    return KNOWN_SERVERS.get(host, f"https://{host}")


def _entries(plan: RegistryPlan, mirror_of: list[str], namespace: str) -> list[HostsEntry]:
    """The registry itself, each upstream it mirrors, and each `mirror_of` host.

    A `mirror_of` host with a namespace points at `/v2/<namespace>` (images
    pushed under it); without one, at a `cache-mirrors` upstream's own path
    when it is one, else at the registry's root (its pull-through cache, or
    images pushed under their own names).
    """
    entries = [HostsEntry(plan.netloc, plan.url, plan.url, mirror=False)]
    mirrored = {m.host: m.upstream_url for m in plan.front.mirrors} if plan.front else {}
    asked = [host for host in mirror_of if host != plan.netloc]
    for host, upstream_url in mirrored.items():
        if not (namespace and host in asked):
            entries.append(
                HostsEntry(
                    host,
                    upstream_url,
                    f"{plan.url}/v2/{host}",
                    mirror=True,
                    override_path=True,
                    namespace=host,
                )
            )
    for host in asked:
        if namespace:
            entries.append(
                HostsEntry(
                    host,
                    _upstream_server(plan, host),
                    f"{plan.url}/v2/{namespace}",
                    mirror=True,
                    override_path=True,
                    namespace=namespace,
                )
            )
        elif host not in mirrored:
            entries.append(HostsEntry(host, _upstream_server(plan, host), plan.url, mirror=True))
    return entries


def render(
    plan: RegistryPlan,
    params: ClientConfigParams,
    *,
    templates: jinja2.Environment,
) -> dict[str, str]:
    """The action's results: every file a node needs, and the JSON and TOML snippets."""
    hosts_dir = params.hosts_dir
    if not posixpath.isabs(hosts_dir) or not hosts_dir.isprintable():
        raise ClientConfigError(
            f"hosts-dir must be an absolute path of printable characters, not {hosts_dir[:64]!r}"
        )
    mirror_of = parse_mirror_of(params.mirror_of)
    namespace = parse_namespace(params.namespace, mirror_of)
    entries = _entries(plan, mirror_of, namespace)
    ca_pem = plan.ca_pem
    template = templates.get_template("hosts.toml.j2")
    files: dict[str, str] = {}
    for entry in entries:
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
    first = next((host for host in mirror_of if host != plan.netloc), plan.netloc)
    password = params.include_password
    results = {
        "hosts-dir": hosts_dir,
        "hosts-toml": files[f"{first}/hosts.toml"],
        "files": json.dumps(files, indent=2, sort_keys=True),
        "custom-registries": json.dumps(_related_registries(entries)),
        "custom-registries-unrelated": json.dumps(
            _unrelated_registries(plan, entries, include_password=password)
        ),
    }
    if ca_pem:
        results["ca-crt"] = ca_pem
    username = plan.basic_auth.user if plan.basic_auth else None
    secret = plan.basic_auth.password if plan.basic_auth and password else None
    mirrors = [entry for entry in entries if entry.mirror]
    results["registries-yaml"] = templates.get_template("registries.yaml.j2").render(
        netloc=plan.netloc,
        url=plan.url,
        mirrors=mirrors,
        ca=posixpath.join(RANCHER_CA_DIR, plan.netloc, "ca.crt") if ca_pem else None,
        username=username,
        password=secret,
    )
    results["registries-conf"] = templates.get_template("registries.conf.j2").render(
        netloc=plan.netloc,
        mirrors=mirrors,
        ca=posixpath.join(CONTAINERS_CERTS_DIR, plan.netloc, "ca.crt") if ca_pem else None,
        insecure=plan.tls is None,
    )
    daemon = _docker_daemon(plan, entries)
    if daemon:
        results["docker-daemon-json"] = json.dumps(daemon)
    if plan.basic_auth:
        results["docker-config-json"] = json.dumps(
            _docker_config(plan, include_password=password), indent=2
        )
        # containers-auth.json(5) is Docker's config.json format: one login, two names.
        results["containers-auth-json"] = results["docker-config-json"]
        results["containerd-auth-toml"] = templates.get_template("containerd-auth.toml.j2").render(
            netloc=plan.netloc,
            username=plan.basic_auth.user,
            password=plan.basic_auth.password if password else None,
        )
    return results


def _related_registries(entries: list[HostsEntry]) -> list[dict[str, str]]:
    """`custom_registries` for containerd units related to this registry.

    The relation already writes `mirrors` and `configs` for our netloc: an
    entry for it would duplicate those tables and stop containerd. Mirror
    entries carry no credentials or CA; the relation's `configs."<netloc>"`
    applies to them, as containerd looks it up by the endpoint's host:port.
    """
    return [{"host": e.host, "url": e.endpoint} for e in entries if e.mirror]


def _unrelated_registries(
    plan: RegistryPlan, entries: list[HostsEntry], *, include_password: bool
) -> list[dict[str, str]]:
    """`custom_registries` for containerd units not related to this registry.

    Credentials and CA sit on an entry whose `url` is the bare netloc, so the
    containerd charm keys them `configs."<netloc>"` as containerd looks them
    up. Without a CA to give (plain HTTP, or a certificate nodes already
    trust) the registry's own entry names its scheme explicitly, as a bare
    netloc means https to containerd, and the credentials go on an entry with
    an empty `host` (the charm then writes no mirror for it).
    """
    credentials: dict[str, str] = {}
    if plan.basic_auth:
        credentials["username"] = plan.basic_auth.user
        if include_password:
            credentials["password"] = plan.basic_auth.password
    if plan.ca_pem:
        own = [{"host": plan.netloc, "url": plan.netloc, **credentials}]
        own[0]["ca_file"] = base64.b64encode(plan.ca_pem.encode()).decode()
    else:
        own = [{"host": plan.netloc, "url": plan.url}]
        if credentials:
            own.append({"host": "", "url": plan.netloc, **credentials})
    return own + _related_registries(entries)


def _docker_daemon(plan: RegistryPlan, entries: list[HostsEntry]) -> dict[str, list[str]]:
    """Docker's `daemon.json`: plain HTTP allowed, and this registry as docker.io's mirror.

    Docker takes mirrors for docker.io only, and only at a registry's root
    (no path): a namespaced mirror cannot be given to it.
    """
    daemon: dict[str, list[str]] = {}
    if plan.tls is None:
        daemon["insecure-registries"] = [plan.netloc]
    if any(e.mirror and e.host == "docker.io" and not e.namespace for e in entries):
        daemon["registry-mirrors"] = [plan.url]
    return daemon


def _docker_config(plan: RegistryPlan, *, include_password: bool) -> dict:
    """Docker's `config.json` (also kubelet's and skopeo's) for this registry's login."""
    assert plan.basic_auth is not None
    user, password = plan.basic_auth.user, plan.basic_auth.password
    if include_password:
        login = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    else:
        login = {"username": user}
    return {"auths": {plan.netloc: login}}
