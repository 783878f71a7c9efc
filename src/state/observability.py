"""Decides where the registry's metrics are served and what the collector scrapes.

The registry's debug server (Prometheus `/metrics`, but also Go's
`/debug/pprof/` and `/debug/vars` on the same mux) always binds loopback.
Its port, and every other loopback metrics port, is derived from
`debug-port`: with `D` the option's value, the main registry's debug server
listens on `127.0.0.1:D+1`, haproxy's Prometheus exporter on `D+2`, the
textfile exporter on `D+3` and mirror `i`'s cache on `D+4+i`.

- With `cos-agent` the collector on the unit scrapes those loopback targets;
  no port is opened.
- Without it and with `prometheus-metrics`, remote scrapers still reach
  `/metrics` on `debug-port`: an haproxy frontend there passes only
  `GET`/`HEAD /metrics` to the loopback debug server and refuses the rest.

Like `plan.py`, this only decides; `workload/` applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from state.settings import METRICS_TEXTFILE_DIR

LOOPBACK = "127.0.0.1"
REGISTRY_OFFSET = 1
HAPROXY_OFFSET = 2
TEXTFILE_OFFSET = 3
MIRRORS_OFFSET = 4
EXPORTER_SERVICE = "docker-registry-node-exporter"
EXPORTER_UNIT_PATH = f"/etc/systemd/system/{EXPORTER_SERVICE}.service"
EXPORTER_PACKAGE = "prometheus-node-exporter"
"""Ubuntu's node exporter; the charm runs its own unit, with only the textfile collector."""
TEXTFILE_NAME = "docker-registry.prom"
COMPONENT = "component"
"""The label naming what a target is; the alert rules select by it, not by job name."""


class MetricsPortsError(ValueError):
    """The loopback metrics ports derived from debug-port do not fit; the message says why."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One loopback metrics endpoint the collector scrapes."""

    name: str
    """What it is, unique per unit: registry, haproxy, textfile, mirror-<host>."""
    address: str
    labels: dict[str, str]


@dataclass(frozen=True)
class ExporterPlan:
    """The textfile exporter: its systemd unit and the folder of `.prom` files it serves."""

    address: str
    unit: str
    textfile_dir: str


@dataclass(frozen=True)
class ObservabilityPlan:
    """Where each metrics server listens, and which of them the collector scrapes."""

    registry_debug: str | None
    """The main registry's debug server (loopback); None: metrics off."""
    mirror_debug: tuple[str | None, ...]
    """Each mirror cache's debug server (loopback), in the mirrors' order."""
    haproxy_exporter: str | None
    """haproxy's Prometheus exporter (loopback), when the front runs for a collector."""
    debug_frontend: str | None
    """Where haproxy serves `/metrics` (only) to remote scrapers; None: no such frontend."""
    exporter: ExporterPlan | None
    targets: tuple[ScrapeTarget, ...]
    """What the collector scrapes (empty without cos-agent)."""

    @property
    def registry_debug_port(self) -> int | None:
        """The loopback port behind the debug-port frontend."""
        return int(self.registry_debug.rpartition(":")[2]) if self.registry_debug else None


def loopback(debug_port: int, offset: int) -> str:
    """The loopback address of the metrics server `offset` ports above debug-port."""
    return f"{LOOPBACK}:{debug_port + offset}"


def plan_observability(
    *,
    debug_port: int,
    registry_port: int,
    prometheus_metrics: bool,
    cos_agent: bool,
    listen_host: str,
    mirror_hosts: tuple[str, ...],
    front: bool,
    exporter_unit: Callable[[str], str],
) -> ObservabilityPlan:
    """Metrics for a collector with `cos_agent`; `/metrics` alone on debug-port otherwise.

    `exporter_unit` renders the textfile exporter's systemd unit from its address.
    """
    metrics = prometheus_metrics or cos_agent
    last = debug_port + (MIRRORS_OFFSET + len(mirror_hosts) - 1 if cos_agent else REGISTRY_OFFSET)
    if not metrics:
        last = debug_port  # nothing listens above it
    if last > 65535:
        raise MetricsPortsError(
            f"debug-port: the loopback metrics ports above it ({debug_port + 1}-{last})"
            " pass 65535; choose a lower debug-port"
        )
    if debug_port < registry_port <= last:
        raise MetricsPortsError(
            f"registry-port, debug-port: the loopback metrics use ports {debug_port + 1}-{last};"
            " registry-port must be outside them"
        )
    registry_debug = loopback(debug_port, REGISTRY_OFFSET) if metrics else None
    mirror_debug = tuple(
        loopback(debug_port, MIRRORS_OFFSET + i) if cos_agent else None
        for i in range(len(mirror_hosts))
    )
    haproxy_exporter = loopback(debug_port, HAPROXY_OFFSET) if cos_agent and front else None
    exporter = None
    targets: list[ScrapeTarget] = []
    if cos_agent:
        address = loopback(debug_port, TEXTFILE_OFFSET)
        exporter = ExporterPlan(address, exporter_unit(address), METRICS_TEXTFILE_DIR)
        targets.append(
            ScrapeTarget(
                "registry", loopback(debug_port, REGISTRY_OFFSET), {COMPONENT: "registry"}
            )
        )
        targets.extend(
            ScrapeTarget(f"mirror-{host}", debug, {COMPONENT: "mirror", "mirror": host})
            for host, debug in zip(mirror_hosts, mirror_debug, strict=True)
            if debug
        )
        if haproxy_exporter:
            targets.append(ScrapeTarget("haproxy", haproxy_exporter, {COMPONENT: "haproxy"}))
        targets.append(ScrapeTarget("textfile", address, {COMPONENT: "textfile"}))
    return ObservabilityPlan(
        registry_debug=registry_debug,
        mirror_debug=mirror_debug,
        haproxy_exporter=haproxy_exporter,
        debug_frontend=(
            f"{listen_host}:{debug_port}" if prometheus_metrics and not cos_agent else None
        ),
        exporter=exporter,
        targets=tuple(targets),
    )


@dataclass(frozen=True)
class UnitHealth:
    """What the charm measured in a hook, for the textfile exporter.

    The registry exposes no metric for any of these; None: not applicable.
    """

    storage_used_bytes: int | None
    storage_free_bytes: int | None
    storage_healthy: bool
    certificate_not_after: float | None
    """Seconds since the epoch."""
    upstreams_reachable: dict[str, bool]
    """Mirror host -> whether its upstream answered."""


def textfile_metrics(health: UnitHealth) -> str:
    """`health` in Prometheus' text format, for a `.prom` file."""
    lines: list[str] = []

    def gauge(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        if not samples:
            return
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{labels} {value:.17g}" for labels, value in samples)

    if health.storage_used_bytes is not None and health.storage_free_bytes is not None:
        gauge(
            "docker_registry_storage_used_bytes",
            "Bytes used on the file system holding the images.",
            [("", health.storage_used_bytes)],
        )
        gauge(
            "docker_registry_storage_free_bytes",
            "Bytes the registry may still write on the file system holding the images.",
            [("", health.storage_free_bytes)],
        )
    gauge(
        "docker_registry_storage_healthy",
        "1 while the registry's storage passes its health check.",
        [("", int(health.storage_healthy))],
    )
    if health.certificate_not_after is not None:
        gauge(
            "docker_registry_certificate_expiry_timestamp_seconds",
            "When the registry's server certificate expires (not after), in seconds since 1970.",
            [("", health.certificate_not_after)],
        )
    gauge(
        "docker_registry_mirror_upstream_up",
        "1 while a mirror's upstream registry answers its API base.",
        [
            (f'{{mirror="{host}"}}', int(up))
            for host, up in sorted(health.upstreams_reachable.items())
        ],
    )
    return "\n".join(lines) + "\n"
