"""The maintenance timer on the unit: systemd's verdict on the schedule, and the metrics file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from state.maintenance import LEASE_EXPIRED_EVENT, METRICS_FILE, OPTION, Lease, MaintenanceRun
from state.settings import METRICS_TEXTFILE_DIR
from workload.machine import Machine

ANALYZE_TIMEOUT = 30.0
JUJU_EXEC = "/usr/bin/juju-exec"
EXPIRY_SLACK = 5.0
"""Seconds after the lease's expiry the unit's own event is dispatched."""


def calendar_problem(schedule: str) -> str | None:
    """Why systemd rejects the calendar expression (`systemd-analyze calendar`); None if not."""
    try:
        done = subprocess.run(
            ["systemd-analyze", "calendar", schedule],
            capture_output=True,
            text=True,
            timeout=ANALYZE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{OPTION}: cannot check it with systemd-analyze: {e}"
    if done.returncode != 0:
        return f"{OPTION}: systemd does not accept {schedule!r} as a calendar expression"
    return None


def arm_lease_expiry(machine: Machine, unit_name: str, lease: Lease, now: float) -> str | None:
    """Dispatch `maintenance_lease_expired` on this unit just after the lease expires.

    A transient timer named after the run, so that one armed for an earlier
    lease is never in the way; firing after the lease was let go, it only
    reconciles. Returns why it could not be armed (update-status still
    reconciles then), None when armed.
    """
    name = f"docker-registry-lease-{lease.run}"
    dispatch = f"JUJU_DISPATCH_PATH=hooks/{LEASE_EXPIRED_EVENT} ./dispatch"
    try:
        machine.start_job(
            name,
            [JUJU_EXEC, unit_name, dispatch],
            {},
            delay=max(lease.expires - now, 0.0) + EXPIRY_SLACK,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot arm {name}: {e}"
    return None


def write_metrics(root: Path, run: MaintenanceRun) -> Path:
    """Write `maintenance.prom` atomically (the collector never reads half a file)."""
    folder = root / METRICS_TEXTFILE_DIR.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / METRICS_FILE
    tmp = path.with_name(f".{METRICS_FILE}.tmp")
    tmp.write_text(run.metrics())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
