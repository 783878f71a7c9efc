"""Fixtures shared by the unit and end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

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
