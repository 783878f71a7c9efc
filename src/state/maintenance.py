"""The maintenance-schedule option: a systemd timer on the leader runs retention, then GC.

The schedule is systemd's `OnCalendar=` syntax. Here (pure, no I/O) only its
shape is checked: one line of the characters calendar expressions use, so
nothing else can reach the timer file. Whether systemd accepts it is asked
on the unit (`systemd-analyze calendar`, `workload/maintenance.py`) before
the timer is written.

The timer starts a oneshot service that dispatches the charm's
`scheduled_maintenance` event through `juju-exec`: the run happens in a hook
context, with the charm's own code, config and leadership, and under Juju's
lock (no hook runs alongside it). Writing the same timer again changes
nothing, so charm restarts and hooks neither lose nor double a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

OPTION = "maintenance-schedule"
TIMER = "docker-registry-maintenance.timer"
SERVICE = "docker-registry-maintenance.service"
TIMER_PATH = f"/etc/systemd/system/{TIMER}"
SERVICE_PATH = f"/etc/systemd/system/{SERVICE}"
EVENT = "scheduled_maintenance"
METRICS_FILE = "maintenance.prom"
_CALENDAR = re.compile(r"[A-Za-z0-9 *,./:~+-]{1,200}\Z")


def schedule_problem(schedule: str) -> str | None:
    """Why the value cannot be a calendar expression, by its shape; None if it may be."""
    if not schedule:
        return None
    if not _CALENDAR.fullmatch(schedule):
        return (
            "must be one systemd calendar expression (OnCalendar= syntax), "
            "e.g. 'Sun *-*-* 03:00:00' or 'daily'"
        )
    return None


@dataclass(frozen=True)
class MaintenancePlan:
    """The timer and its service, as files (path on the host -> content)."""

    schedule: str
    files: dict[Path, str]


def plan_maintenance(
    schedule: str,
    *,
    leader: bool,
    unit_name: str,
    root: Path,
    templates: jinja2.Environment,
) -> MaintenancePlan | None:
    """The timer on the leader when a schedule is set; None: no timer on this unit."""
    if not schedule or not leader:
        return None
    timer = templates.get_template("maintenance.timer.j2").render(
        schedule=schedule, service=SERVICE
    )
    service = templates.get_template("maintenance.service.j2").render(unit_name=unit_name)
    return MaintenancePlan(
        schedule,
        {
            root / TIMER_PATH.lstrip("/"): timer,
            root / SERVICE_PATH.lstrip("/"): service,
        },
    )


@dataclass(frozen=True)
class MaintenanceRun:
    """What one maintenance run did, for the status and the metrics textfile."""

    finished: float
    """When it ended (seconds since the epoch)."""
    ok: bool
    bytes_freed: int | None
    manifests_deleted: int
    detail: str

    def metrics(self) -> str:
        """The Prometheus textfile (node-exporter's textfile collector format)."""
        freed = -1 if self.bytes_freed is None else self.bytes_freed
        return (
            "# HELP docker_registry_maintenance_last_run_timestamp_seconds "
            "When the last scheduled maintenance ended.\n"
            "# TYPE docker_registry_maintenance_last_run_timestamp_seconds gauge\n"
            f"docker_registry_maintenance_last_run_timestamp_seconds {self.finished:.0f}\n"
            "# HELP docker_registry_maintenance_last_run_success "
            "1 if the last scheduled maintenance succeeded.\n"
            "# TYPE docker_registry_maintenance_last_run_success gauge\n"
            f"docker_registry_maintenance_last_run_success {int(self.ok)}\n"
            "# HELP docker_registry_maintenance_last_run_freed_bytes "
            "Bytes the last garbage collection freed (-1: unknown, object storage).\n"
            "# TYPE docker_registry_maintenance_last_run_freed_bytes gauge\n"
            f"docker_registry_maintenance_last_run_freed_bytes {freed}\n"
            "# HELP docker_registry_maintenance_last_run_manifests_deleted "
            "Manifests the retention policy deleted in the last run.\n"
            "# TYPE docker_registry_maintenance_last_run_manifests_deleted gauge\n"
            f"docker_registry_maintenance_last_run_manifests_deleted {self.manifests_deleted}\n"
        )
