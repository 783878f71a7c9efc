"""The maintenance timer on the unit: systemd's verdict on the schedule, and the metrics file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from state.maintenance import METRICS_FILE, OPTION, MaintenanceRun
from state.settings import METRICS_TEXTFILE_DIR

ANALYZE_TIMEOUT = 30.0


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
