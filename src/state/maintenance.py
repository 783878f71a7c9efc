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

With filesystem storage each unit has its own disk and its own timer. With
shared object storage (S3, Swift) one run serves the application, and every
unit must refuse pushes while it collects: the leader takes a `Lease` in the
peer application data, each unit serves read-only while an unexpired lease
exists and says so in its unit data, and the leader collects once every
unit has said so, then lets go. The lease's expiry bounds it all: the
collection is stopped before it, and each unit returns to read-write at it
(a transient timer dispatches `maintenance_lease_expired`; update-status
too), so a leader that dies mid-run leaves no unit read-only past it.
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
LEASE_EXPIRED_EVENT = "maintenance_lease_expired"
MAX_MAINTENANCE_WINDOW = 7 * 24 * 60
"""Minutes: a week; a longer read-only window is a stopped registry."""
LEASE_MARGIN = 30.0
"""Seconds of a lease left unused by the collection, for the leader to let go in time."""
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
    runs_here: bool,
    unit_name: str,
    root: Path,
    templates: jinja2.Environment,
) -> MaintenancePlan | None:
    """The timer when a schedule is set and runs on this unit; None: no timer here.

    `runs_here`: every unit with filesystem storage, the leader only with shared storage.
    """
    if not schedule or not runs_here:
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


@dataclass(frozen=True)
class Lease:
    """The leader's hold on shared storage for one run: every unit read-only until it expires."""

    run: str
    """Names the run, so that a unit's word that it is read-only is for this one."""
    holder: str
    """The unit that took it and collects (the leader when it was taken)."""
    expires: float
    """Seconds since the epoch; past it, no unit stays read-only and nothing collects."""

    def active(self, now: float) -> bool:
        """Whether it still holds (never for one dated past the longest window: not ours)."""
        return now < self.expires <= now + MAX_MAINTENANCE_WINDOW * 60 + LEASE_MARGIN

    def collection_timeout(self, now: float) -> float:
        """How long the collection may take and still end before the lease."""
        return self.expires - now - LEASE_MARGIN


def waiting_for(lease: Lease, acknowledged: dict[str, str]) -> list[str]:
    """The units (name -> the run each last said it serves read-only for) not yet read-only."""
    return sorted(unit for unit, run in acknowledged.items() if run != lease.run)


@dataclass(frozen=True)
class LeaseStep:
    """What a unit does about the lease in a hook, once its registry's configuration is applied."""

    acknowledge: str = ""
    """The run it says it serves read-only for; "": none (the word taken back)."""
    arm: Lease | None = None
    """A lease whose expiry it arms its own timer for (the first time it says so)."""
    let_go: bool = False
    """The leader removes the lease: it expired."""
    failure: str = ""
    """Why the leader's own run failed, to record."""
    collect: Lease | None = None
    """The leader's lease under which it collects now: every unit is read-only."""


def lease_step(
    recorded: Lease | None,
    now: float,
    *,
    unit: str,
    leader: bool,
    read_only: bool,
    acknowledged_here: str,
    acknowledged: dict[str, str],
) -> LeaseStep:
    """The next step of the lease protocol for `unit` (see the module's docstring).

    `recorded`: the lease in the peer data, expired or not; `read_only`:
    whether this unit's registry now runs read-only; `acknowledged`: the
    other units' word, by unit.
    """
    active = recorded if recorded and recorded.active(now) else None
    run = active.run if active and read_only else ""
    arm = active if run and acknowledged_here != run else None
    if not leader or recorded is None:
        return LeaseStep(acknowledge=run, arm=arm)
    if active is None:
        failure = ""
        if recorded.holder == unit:
            waiting = ", ".join(waiting_for(recorded, acknowledged))
            failure = f"the lease expired waiting for {waiting or 'this unit'}"
        return LeaseStep(acknowledge=run, arm=arm, let_go=True, failure=failure)
    ours = run and active.holder == unit and not waiting_for(active, acknowledged)
    return LeaseStep(acknowledge=run, arm=arm, collect=active if ours else None)
