"""Decides the layout that serves several upstream mirrors on one endpoint.

With `cache-mirrors` set, each upstream gets its own registry process (a
pull-through cache can only have one upstream), an instance of the systemd
template unit `docker-registry-mirror@<host>`, with its own config and
storage. haproxy from the Ubuntu archive listens on `registry-port`,
terminates TLS when the registry has a certificate, routes `/v2/<host>/...`
to that upstream's cache with the prefix removed, and everything else to the
main registry. Behind it every registry listens on a unix socket, so no
loopback ports need to be reserved. The front also runs without mirrors when
access control needs it (`state/access.py`): it then checks every request's
credential and right, and the registries behind it have no auth of their own.

Like `plan.py`, this only decides: `workload/registry.py` applies the result.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import jinja2

from state.access import AccessPlan
from state.mirrors import Mirror
from state.observability import ObservabilityPlan
from state.settings import Storage, Upstream
from state.tls import ServerTLS

SERVICE_TEMPLATE = "docker-registry-mirror@"
HAPROXY_SERVICE = "haproxy"
PACKAGES = ("haproxy",)
HAPROXY_CONFIG_PATH = "/etc/haproxy/haproxy.cfg"
PEM_PATH = "/etc/docker/registry/front.pem"
LUA_PATH = "/etc/haproxy/docker-registry.lua"
MIRROR_CONFIG_DIR = "/etc/docker/registry/mirrors"
UNIT_PATH = f"/etc/systemd/system/{SERVICE_TEMPLATE}.service"
DROPIN_PATH = f"/etc/systemd/system/{SERVICE_TEMPLATE}.service.d/10-juju.conf"
TMPFILES_PATH = "/etc/tmpfiles.d/docker-registry.conf"
SOCKET_DIR = "/run/docker-registry"
REGISTRY_SOCKET = "registry.sock"
GENERATION_PATH = "/.docker-registry-charm/generation"
"""Where the front answers which users it has, so the charm knows a reload took effect."""
MIRRORS_DATA_SUBDIR = "mirrors"
UMASK = "0007"
"""Sockets in the setgid socket directory get group haproxy and mode 0770."""


class RenderRegistry(Protocol):
    """Renders a registry config.yml."""

    def __call__(
        self,
        socket: Path,
        upstream: Upstream | None,
        storage_params: dict,
        *,
        debug_addr: str | None,
    ) -> str:
        """(unix socket, upstream, storage params, loopback debug address) -> YAML."""
        ...


def mirror_service(host: str) -> str:
    """The systemd unit serving the mirror of `host`."""
    return f"{SERVICE_TEMPLATE}{host}"


@dataclass(frozen=True)
class MirrorInstance:
    """One upstream's pull-through cache behind the front."""

    host: str
    service: str
    config_path: Path
    config_yaml: str = field(repr=False)
    socket: Path
    data_dir: Path | None
    backend: str
    """haproxy backend name."""
    upstream_url: str
    """Where the cache fetches from, and where clients fall back to."""

    @property
    def prefix(self) -> str:
        """The path clients reach this mirror under (containerd's override_path)."""
        return f"/v2/{self.host}"

    @property
    def prefix_regex(self) -> str:
        """`prefix` as a regular expression for haproxy's replace-path."""
        return re.escape(self.prefix)


@dataclass(frozen=True)
class FrontPlan:
    """haproxy, the mirror instances, and the files they read."""

    haproxy_config: str
    haproxy_config_path: Path
    pem: str | None = field(repr=False)
    """Certificate and key for haproxy's TLS; None serves plain HTTP."""
    pem_path: Path
    lua: str
    """haproxy's action holding requests while a registry restarts."""
    lua_path: Path
    unit: str
    unit_path: Path
    dropin_path: Path
    tmpfiles: str
    tmpfiles_path: Path
    socket_dir: Path
    registry_socket: Path
    mirrors: tuple[MirrorInstance, ...]
    generation: str = ""
    """A digest of the users and their hashes, which the front answers at GENERATION_PATH."""

    @property
    def hosts(self) -> tuple[str, ...]:
        """The upstream hosts served, as clients name them."""
        return tuple(m.host for m in self.mirrors)


def mirror_storage(storage: Storage, data_dir: Path | None, host: str) -> dict:
    """Storage parameters of `host`'s cache: a folder of its own beside the main registry's."""
    if data_dir is not None:
        return {"rootdirectory": str(data_dir / MIRRORS_DATA_SUBDIR / host)}
    params = dict(storage.params)
    root = str(params.get("rootdirectory", "")).rstrip("/")
    params["rootdirectory"] = f"{root}/{MIRRORS_DATA_SUBDIR}/{host}"
    return params


def plan_front(
    mirrors: tuple[Mirror, ...],
    *,
    templates: jinja2.Environment,
    root: Path,
    listen_host: str,
    port: int,
    tls: ServerTLS | None,
    client_ca: Path | None,
    storage: Storage,
    data_dir: Path | None,
    render_registry: RenderRegistry,
    metrics: ObservabilityPlan,
    realm: str,
    access: AccessPlan | None = None,
    password_hashes: Mapping[str, str] | None = None,
) -> FrontPlan:
    """The front and one cache per mirror; the main registry moves to a socket.

    With `access`, the front admits its users (their bcrypt hashes in
    `password_hashes`, by name) to what their role allows.
    """

    def on_host(path: str) -> Path:
        return root / path.lstrip("/")

    socket_dir = on_host(SOCKET_DIR)
    config_dir = on_host(MIRROR_CONFIG_DIR)
    instances = []
    for index, (mirror, debug_addr) in enumerate(zip(mirrors, metrics.mirror_debug, strict=True)):
        socket_name = hashlib.sha256(mirror.host.encode()).hexdigest()[:12]
        socket = socket_dir / f"{socket_name}.sock"
        storage_params = mirror_storage(storage, data_dir, mirror.host)
        instances.append(
            MirrorInstance(
                host=mirror.host,
                service=mirror_service(mirror.host),
                config_path=config_dir / f"{mirror.host}.yml",
                config_yaml=render_registry(
                    socket, mirror.upstream, storage_params, debug_addr=debug_addr
                ),
                socket=socket,
                data_dir=(data_dir / MIRRORS_DATA_SUBDIR / mirror.host) if data_dir else None,
                backend=f"mirror{index}",
                upstream_url=mirror.upstream.url,
            )
        )
    pem_path = on_host(PEM_PATH)
    lua_path = on_host(LUA_PATH)
    registry_socket = socket_dir / REGISTRY_SOCKET
    hashes = password_hashes or {}
    generation = hashlib.sha256(
        "\n".join(
            f"{u.name}:{u.role}:{u.prefix}:{hashes.get(u.name)}" for u in access.users
        ).encode()
        if access
        else b""
    ).hexdigest()[:16]
    haproxy_config = templates.get_template("haproxy.cfg.j2").render(
        bind=f"{listen_host}:{port}",
        pem_path=pem_path if tls else None,
        lua_path=lua_path,
        client_ca=client_ca,
        # On a unit haproxy drops to its user, who reaches the sockets
        # through their group; a test root is not the unit's.
        drop_privileges=root == Path("/"),
        registry_socket=registry_socket,
        mirrors=instances,
        realm=realm,
        access=access,
        hashes=hashes,
        generation=generation,
        generation_path=GENERATION_PATH,
        metrics=metrics,
    )
    return FrontPlan(
        haproxy_config=haproxy_config,
        haproxy_config_path=on_host(HAPROXY_CONFIG_PATH),
        pem=f"{tls.cert_pem.rstrip()}\n{tls.key_pem.rstrip()}\n" if tls else None,
        pem_path=pem_path,
        lua=templates.get_template("await-socket.lua").render(),
        lua_path=lua_path,
        unit=templates.get_template("mirror@.service.j2").render(config_dir=MIRROR_CONFIG_DIR),
        unit_path=on_host(UNIT_PATH),
        dropin_path=on_host(DROPIN_PATH),
        tmpfiles=templates.get_template("tmpfiles.conf.j2").render(socket_dir=SOCKET_DIR),
        tmpfiles_path=on_host(TMPFILES_PATH),
        socket_dir=socket_dir,
        registry_socket=registry_socket,
        mirrors=tuple(instances),
        generation=generation,
    )
