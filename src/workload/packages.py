"""Applies layer:apt's options (`state/packages.py` decides): sources, keys, packages, holds.

Sources and keys are root-owned 0644 files under names only the charm uses,
so removing the ones no longer wanted touches nothing else. Packages are
never removed. Only holds the charm set are released.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from state.packages import KEY_PREFIX, PackagePlan
from workload.files import write_if_changed
from workload.machine import INSTALL_ERRORS, Machine

logger = logging.getLogger(__name__)


def apply_sources(plan: PackagePlan) -> bool:
    """Write the sources list and keys, remove the charm's that are no longer wanted."""
    changed = False
    if plan.keyring_dir.is_dir():
        for path in plan.keyring_dir.glob(f"{KEY_PREFIX}*.asc"):
            if path not in plan.keys:
                path.unlink()
                changed = True
    for path, key in plan.keys.items():
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        changed |= write_if_changed(path, key)
    if plan.sources_list is None:
        if plan.sources_path.is_file():
            plan.sources_path.unlink()
            changed = True
    else:
        plan.sources_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        changed |= write_if_changed(plan.sources_path, plan.sources_list)
    return changed


def install_extra(machine: Machine, packages: tuple[str, ...]) -> str | None:
    """Install `packages` (refreshing the index, so new sources count); why not, if it failed."""
    if not packages:
        return None
    try:
        machine.install_packages(packages)
    except INSTALL_ERRORS as e:
        logger.error("installing %s failed: %s", " ".join(packages), e)
        return f"extra_packages: cannot install {' '.join(packages)}; see juju debug-log"
    return None


def set_holds(machine: Machine, wanted: Iterable[str], held: Iterable[str]) -> list[str]:
    """Hold `wanted`, release what the charm held that is not; the packages now held.

    One not installed yet (haproxy before the first mirror) is held in a later hook.
    """
    wanted, held = set(wanted), set(held)
    newly = machine.hold_packages(sorted(wanted - held), hold=True) if wanted - held else []
    if held - wanted:
        machine.hold_packages(sorted(held - wanted), hold=False)
    return sorted((held & wanted) | set(newly))
