"""Decides what the registry on this unit should look like.

`plan_registry` turns `PlanInputs` (validated config, the shared http secret,
this unit and TLS from a relation) into a `RegistryPlan`: the rendered files
and the facts the charm reports. Each part is decided by its own function:
where clients reach it (`plan_address`), TLS (`plan_tls`), storage
(`plan_storage`), the outbound proxy (`plan_environment`) and the front
(`state/front.py`). It does no I/O besides reading templates, so the same inputs
give the same plan, which is what makes applying it idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import jinja2

from state.access import AccessPlan
from state.config import CharmConfig
from state.front import HAPROXY_CONFIG_PATH, UMASK, FrontPlan, plan_front
from state.observability import (
    EXPORTER_UNIT_PATH,
    MetricsPortsError,
    ObservabilityPlan,
    plan_observability,
)
from state.settings import (
    CLIENT_CAS_PATH,
    CONFIG_PATH,
    DATA_DIR,
    DROPIN_PATH,
    ENVIRONMENT_PATH,
    HTPASSWD_PATH,
    METRICS_TEXTFILE_DIR,
    TOKEN_ROOT_CERTS_PATH,
    BasicAuth,
    TokenAuth,
    Upstream,
    is_host,
)
from state.tls import ServerTLS

NO_PROXY = "localhost,127.0.0.1,::1"


class PlanError(ValueError):
    """Inputs that are each valid but do not work together; the message names them."""


@dataclass(frozen=True)
class TLSPaths:
    """Where the server certificate, key and CA are written."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class RegistryPlan:
    """Everything the registry on this unit reads, and how clients reach it."""

    config_yaml: str = field(repr=False)
    dropin: str
    environment: str | None = field(repr=False)
    """The services' EnvironmentFile (the outbound proxy); None: no file."""
    environment_path: Path
    config_path: Path
    htpasswd_path: Path
    token_root_certs_path: Path
    dropin_path: Path
    data_dir: Path | None
    tls_paths: TLSPaths
    port: int
    ports: tuple[int, ...]
    netloc: str
    """host:port clients put in image names."""
    url: str
    """The registry's base URL as clients reach it."""
    proxy_addresses: tuple[str, ...]
    """The proxies' addresses (the website relation); clients are told the first."""
    unit_address: str
    """This unit's own address (clients may be sent to another unit or a proxy)."""
    basic_auth: BasicAuth | None = field(repr=False)
    """The operator's admin credential (auth-basic-*)."""
    token_auth: TokenAuth | None = field(repr=False)
    tls: ServerTLS | None = field(repr=False)
    front: FrontPlan | None = None
    """haproxy and the mirrors' caches when cache-mirrors is set; None: the registry alone."""
    cache_url: str | None = None
    """The upstream the registry itself caches (cache-remoteurl)."""
    read_only: bool = False
    """Whether the registry refuses pushes (config or maintenance)."""
    client_cas_path: Path | None = None
    """With mutual TLS, the CAs whose clients are admitted; None: any client may connect."""
    observability: ObservabilityPlan | None = None
    """Where metrics are served and what the collector scrapes."""
    metrics_haproxy_config: str | None = None
    """haproxy.cfg when haproxy runs only to serve `/metrics` on debug-port (no front)."""
    haproxy_config_path: Path | None = None
    exporter_unit_path: Path | None = None
    outbound_proxies: dict[str, str] = field(default_factory=dict, repr=False)
    """The registry's outbound proxy by URL scheme (for probes of the upstreams)."""
    access: AccessPlan | None = field(default=None, repr=False)
    """Who may do what (state/access.py); None: no access control."""

    @property
    def htpasswd_auth(self) -> BasicAuth | None:
        """The admin the registry itself checks: only when it serves alone (no front)."""
        return self.basic_auth if self.front is None else None

    @property
    def action_credential(self) -> BasicAuth | None:
        """What the actions log in with (never a consumer's credential)."""
        return self.access.action_credential if self.access else None

    @property
    def proxied(self) -> bool:
        """Whether clients reach the registry through a proxy."""
        return bool(self.proxy_addresses)

    @property
    def scheme(self) -> Literal["http", "https"]:
        """How the registry itself serves: https when it has a certificate."""
        return "https" if self.tls else "http"

    @property
    def client_auth(self) -> bool:
        """Whether clients must present a certificate (mutual TLS)."""
        return self.client_cas_path is not None

    @property
    def ca_pem(self) -> str | None:
        """The CA clients should trust, when the registry serves TLS."""
        return self.tls.ca_pem if self.tls else None


def yaml_scalar(value: object) -> str:
    r"""`value` as a YAML scalar the registry's parser (go-yaml v2) reads back unchanged.

    Strings are double-quoted and printable ASCII: go-yaml refuses raw
    characters outside the Basic Multilingual Plane and escaped surrogate
    pairs (what JSON writes for them), but reads `\UXXXXXXXX`.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    out = []
    for char in str(value):
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def toml_string(value: object) -> str:
    """`value` as a TOML basic string: the same escapes as `yaml_scalar`'s.

    Not JSON's: TOML refuses the surrogate pairs JSON writes for characters
    beyond the Basic Multilingual Plane (an emoji in a password).
    """
    return yaml_scalar(str(value))


def systemd_environment_file(environment: dict[str, str]) -> str:
    """An EnvironmentFile= for systemd, each value double-quoted and escaped."""
    lines = ["# Managed by the docker-registry charm; changes made here are overwritten."]
    for name, value in sorted(environment.items()):
        escaped = "".join("\\" + c if c in '"\\`$' else c for c in value)
        lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"


def haproxy_word(value: object) -> str:
    """`value` as one single-quoted haproxy.cfg word (no escapes or `$` expansion inside)."""
    text = str(value)
    if "'" in text or not text.isprintable():
        raise ValueError(f"cannot quote {text!r} for haproxy.cfg")
    return f"'{text}'"


def template_environment(charm_dir: Path, cache_dir: Path | None = None) -> jinja2.Environment:
    """The jinja2 environment for the charm's `templates/` folder.

    With `cache_dir`, templates are compiled once and later hooks load the
    compiled code (0.5 ms instead of 8; keyed by the template's source).
    """
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(charm_dir / "templates"),
        bytecode_cache=jinja2.FileSystemBytecodeCache(str(cache_dir)) if cache_dir else None,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - renders YAML and systemd units, not HTML
    )
    environment.filters["yaml"] = yaml_scalar
    environment.filters["haproxy"] = haproxy_word
    environment.filters["toml"] = toml_string
    return environment


def check_scheme(scheme: str, tls: ServerTLS | None, config: CharmConfig) -> None:
    """Refuse an `http-host` whose scheme is not how the registry serves."""
    source = "tls-cert-blob" if config.tls else "cert-provider"
    if scheme == "https" and tls is None:
        raise PlanError(
            "http-host: https:// but the registry has no certificate"
            " (set tls-cert-blob and tls-key-blob, or relate cert-provider)"
        )
    if scheme == "http" and tls is not None:
        raise PlanError(f"http-host: http:// but the registry serves TLS ({source})")


@dataclass(frozen=True)
class PlanInputs:
    """Everything the plan is decided from: validated config, this unit and its relations.

    One value, so that each part of the plan (`plan_address`, `plan_tls`,
    `plan_storage`, the front) takes what it needs from the same place.
    """

    config: CharmConfig
    templates: jinja2.Environment
    root: Path
    """Where the unit's file system is: `/` on a unit, a folder in tests."""
    listen_host: str
    realm: str
    http_secret: str = field(repr=False)
    unit_address: str
    primary_address: str
    """The oldest unit's address: what every unit tells clients without a proxy."""
    proxy_addresses: tuple[str, ...] = ()
    relation_tls: ServerTLS | None = field(default=None, repr=False)
    maintenance: bool = False
    """Read-only storage whatever the config (for garbage collection)."""
    client_auth: bool = False
    """Require client certificates signed by the CA (when there is one)."""
    access: AccessPlan | None = field(default=None, repr=False)
    """Who may do what (`state.access.plan_access`)."""
    password_hashes: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The bcrypt hash of each of `access`'s users, by name."""
    cos_agent: bool = False
    """A collector is related on cos-agent: metrics on loopback only, scraped by it."""

    def on_host(self, path: str) -> Path:
        """`path` on the unit's file system."""
        return self.root / path.lstrip("/")


@dataclass(frozen=True)
class TLSPlan:
    """How the registry serves TLS: the material, where it goes, whom it admits."""

    tls: ServerTLS | None
    paths: TLSPaths
    client_ca: Path | None
    """With mutual TLS, the CAs file whose clients are admitted."""


@dataclass(frozen=True)
class Address:
    """Where clients reach the registry."""

    netloc: str
    url: str


@dataclass(frozen=True)
class StoragePlan:
    """The main registry's storage parameters, and its data folder when on local disk."""

    data_dir: Path | None
    params: dict


def plan_tls(inputs: PlanInputs) -> TLSPlan:
    """TLS from the config blobs wins over a certificate from cert-provider.

    An operator who set blobs chose them on purpose.
    """
    config = inputs.config
    tls = config.tls or inputs.relation_tls
    client_ca = (
        inputs.on_host(CLIENT_CAS_PATH) if inputs.client_auth and tls and tls.ca_pem else None
    )
    paths = TLSPaths(
        inputs.on_host(config.tls_cert_path),
        inputs.on_host(config.tls_key_path),
        inputs.on_host(config.tls_ca_path),
    )
    return TLSPlan(tls=tls, paths=paths, client_ca=client_ca)


def plan_address(inputs: PlanInputs, tls: ServerTLS | None) -> Address:
    """Clients reach the registry at `http-host`, else the first proxy, else the oldest unit.

    So every unit tells clients the same thing. The certificate must name that host.
    """
    config = inputs.config
    for source, address in (
        *(("website", proxy) for proxy in inputs.proxy_addresses),
        ("peer", inputs.primary_address),
    ):
        if not is_host(address):
            raise PlanError(f"{source}: {address[:64]!r} is not an IP address or host name")
    if config.http_host:
        parts = urlsplit(config.http_host)
        netloc, host, reached = parts.netloc, parts.hostname or "", "http-host"
        url = config.http_host.rstrip("/")
        check_scheme(parts.scheme, tls, config)
    else:
        host = inputs.proxy_addresses[0] if inputs.proxy_addresses else inputs.primary_address
        reached = "the proxy on website" if inputs.proxy_addresses else "the unit"
        netloc = (
            f"[{host}]:{config.registry_port}" if ":" in host else f"{host}:{config.registry_port}"
        )
        url = f"{'https' if tls else 'http'}://{netloc}"
    if tls and not tls.names_host(host):
        source = "tls-cert-blob" if config.tls else "cert-provider"
        raise PlanError(
            f"{source}: the certificate does not name {host}, where clients reach the"
            f" registry ({reached})"
        )
    return Address(netloc=netloc, url=url)


def plan_storage(inputs: PlanInputs) -> StoragePlan:
    """Object storage is shared by every unit; a filesystem lives in the unit's data folder."""
    storage = inputs.config.storage
    if storage.shared:
        return StoragePlan(data_dir=None, params=dict(storage.params))
    data_dir = inputs.on_host(DATA_DIR)
    return StoragePlan(data_dir=data_dir, params={"rootdirectory": str(data_dir)})


def plan_environment(config: CharmConfig) -> dict[str, str]:
    """The services' environment: the outbound proxy for upstreams, never for loopback."""
    environment = {
        name: value
        for name, value in (
            ("HTTP_PROXY", config.registry_http_proxy),
            ("HTTPS_PROXY", config.registry_https_proxy),
        )
        if value
    }
    if environment:
        environment["NO_PROXY"] = NO_PROXY
    return environment


def plan_metrics(inputs: PlanInputs) -> ObservabilityPlan:
    """Where the metrics servers listen (`state/observability.py`) for these inputs."""
    config = inputs.config
    try:
        return plan_observability(
            debug_port=config.debug_port,
            registry_port=config.registry_port,
            prometheus_metrics=config.prometheus_metrics,
            cos_agent=inputs.cos_agent,
            listen_host=inputs.listen_host,
            mirror_hosts=tuple(m.host for m in config.mirrors),
            front=bool(config.mirrors),
            exporter_unit=lambda address: inputs.templates.get_template(
                "node-exporter.service.j2"
            ).render(
                address=address,
                textfile_dir=inputs.on_host(METRICS_TEXTFILE_DIR),
            ),
        )
    except MetricsPortsError as e:
        raise PlanError(str(e)) from e


def render_metrics_haproxy(inputs: PlanInputs, metrics: ObservabilityPlan) -> str:
    """haproxy.cfg with only the metrics frontends: haproxy runs without a front."""
    return inputs.templates.get_template("haproxy.cfg.j2").render(
        drop_privileges=inputs.root == Path("/"),
        registry_socket=None,
        metrics=metrics,
    )


def plan_registry(inputs: PlanInputs) -> RegistryPlan:
    """The registry this unit should run, with the front and mirrors when there are any."""
    config = inputs.config
    templates = inputs.templates
    tls_plan = plan_tls(inputs)
    tls, client_ca = tls_plan.tls, tls_plan.client_ca
    address = plan_address(inputs, tls)
    storage = plan_storage(inputs)
    observability = plan_metrics(inputs)
    ports = (config.registry_port,)
    if observability.debug_frontend:
        ports += (config.debug_port,)
    paths = {
        "config_path": inputs.on_host(CONFIG_PATH),
        "htpasswd_path": inputs.on_host(HTPASSWD_PATH),
        "token_root_certs_path": inputs.on_host(TOKEN_ROOT_CERTS_PATH),
        "dropin_path": inputs.on_host(DROPIN_PATH),
    }

    def render_registry(
        socket: Path | None,
        upstream: Upstream | None,
        storage_params: dict,
        *,
        tls: ServerTLS | None = None,
        debug_addr: str | None = None,
        read_only: bool = config.storage_read_only,
    ) -> str:
        """A registry's config.yml; the main one on TCP or, behind haproxy, a socket."""
        return templates.get_template("config.yml.j2").render(
            config=config,
            # Behind the front, haproxy checks credentials.
            htpasswd=config.basic_auth if socket is None else None,
            realm=inputs.realm,
            http_secret=inputs.http_secret,
            net="unix" if socket else None,
            addr=str(socket) if socket else f"{inputs.listen_host}:{config.registry_port}",
            debug_addr=debug_addr,
            tls=tls,
            tls_paths=tls_plan.paths,
            client_ca=client_ca,
            upstream=upstream,
            storage_driver=config.storage.driver,
            storage_params=storage_params,
            read_only=read_only,
            **paths,
        )

    read_only = config.storage_read_only or inputs.maintenance
    front = None
    access = inputs.access
    if config.mirrors or (access and access.enforced_by_front):
        front = plan_front(
            config.mirrors,
            templates=templates,
            root=inputs.root,
            listen_host=inputs.listen_host,
            port=config.registry_port,
            tls=tls,
            client_ca=client_ca,
            storage=config.storage,
            data_dir=storage.data_dir,
            render_registry=render_registry,
            metrics=observability,
            realm=inputs.realm,
            access=access,
            password_hashes=inputs.password_hashes,
        )
    config_yaml = render_registry(
        front.registry_socket if front else None,
        config.cache,
        storage.params,
        # haproxy terminates TLS when there is a front.
        tls=None if front else tls,
        debug_addr=observability.registry_debug,
        read_only=read_only,
    )
    environment = plan_environment(config)
    dropin = templates.get_template("dropin.conf.j2").render(
        environment_path=ENVIRONMENT_PATH if environment else None,
        umask=front and UMASK,
    )
    return RegistryPlan(
        config_yaml=config_yaml,
        dropin=dropin,
        environment=systemd_environment_file(environment) if environment else None,
        environment_path=inputs.on_host(ENVIRONMENT_PATH),
        data_dir=storage.data_dir,
        tls_paths=tls_plan.paths,
        port=config.registry_port,
        ports=ports,
        netloc=address.netloc,
        url=address.url,
        proxy_addresses=inputs.proxy_addresses,
        unit_address=inputs.unit_address,
        basic_auth=config.basic_auth,
        token_auth=config.token_auth,
        tls=tls,
        front=front,
        cache_url=config.cache.url if config.cache else None,
        read_only=read_only,
        client_cas_path=client_ca,
        access=access,
        observability=observability,
        metrics_haproxy_config=(
            render_metrics_haproxy(inputs, observability)
            if front is None and observability.debug_frontend
            else None
        ),
        haproxy_config_path=inputs.on_host(HAPROXY_CONFIG_PATH),
        exporter_unit_path=inputs.on_host(EXPORTER_UNIT_PATH),
        outbound_proxies={
            scheme: environment[f"{scheme.upper()}_PROXY"]
            for scheme in ("http", "https")
            if f"{scheme.upper()}_PROXY" in environment
        },
        **paths,
    )
