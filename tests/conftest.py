"""Fixtures shared by the unit and end-to-end tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

from charm import DockerRegistryCharm
from charm_context import charm_context
from local_machine import LocalMachine
from support.wait import free_port


@pytest.fixture
def machine() -> Iterator[LocalMachine]:
    """A unit root in a temporary folder; services it starts are stopped afterwards."""
    with LocalMachine.temporary() as local:
        yield local


@pytest.fixture
def ctx(machine: LocalMachine) -> testing.Context[DockerRegistryCharm]:
    return charm_context(machine)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def small_disk(machine) -> Iterator[Path]:
    """A 32 MB tmpfs mounted where the registry keeps its images (needs root)."""
    data = machine.root / "srv/registry"
    data.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(data)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield data
    machine.close()
    subprocess.run(["umount", "-l", str(data)], check=True)
