"""The integration tier: the packed charm deployed by Juju (jubilant), for a Juju-capable CI.

Skipped, saying why, where there is no `juju` client with a controller (as
on the development machines). `.github/workflows/integration.yaml` runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jubilant
import pytest

PROJECT = Path(__file__).resolve().parent.parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


def _no_controller() -> str | None:
    if shutil.which("juju") is None:
        return "no juju client"
    done = subprocess.run(
        ["juju", "show-controller"], capture_output=True, text=True, timeout=60, check=False
    )
    return None if done.returncode == 0 else "no Juju controller"


@pytest.fixture(scope="module")
def charm_file(juju: jubilant.Juju) -> Path:
    """The `.charm` to deploy: $CHARM_FILE, or the one scripts/pack-charm or CI wrote.

    After `juju`, which skips the tier where there is no controller.
    """
    given = os.environ.get("CHARM_FILE")
    found = [Path(given)] if given else sorted(PROJECT.glob("*.charm"))
    found += sorted((PROJECT / "build").glob("*.charm"))
    if not found:
        pytest.fail("no packed charm: run charmcraft pack (or set CHARM_FILE)")
    return found[0].resolve()


@pytest.fixture(scope="module")
def juju() -> Iterator[jubilant.Juju]:
    if why := _no_controller():
        pytest.skip(f"integration: {why}")
    keep = os.environ.get("KEEP_MODELS") == "1"
    with jubilant.temp_model(keep=keep) as model:
        model.wait_timeout = 20 * 60
        yield model
