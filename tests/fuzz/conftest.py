"""The fuzz tests: a fixed, seeded budget; their counts are printed after the run."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

from charm_context import charm_context, unit_state
from fuzz.budget import COUNTS
from local_machine import LocalMachine
from support.wait import free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/fuzz carries the `fuzz` marker (`-m "not fuzz"` skips it)."""
    for item in items:
        if "tests/fuzz/" in str(item.path):
            item.add_marker(pytest.mark.fuzz)


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what the fuzzing tried and how it ended, per input family."""
    if not COUNTS:
        return
    terminalreporter.section("fuzz counts")
    for family, outcomes in sorted(COUNTS.items()):
        detail = ", ".join(f"{outcome} {n}" for outcome, n in sorted(outcomes.items()))
        terminalreporter.write_line(f"{family}: {sum(outcomes.values())} examples ({detail})")


@dataclasses.dataclass
class Unit:
    """One unit kept across examples: its machine, context and last state."""

    machine: LocalMachine
    ctx: testing.Context
    state: testing.State
    base: dict
    foreign: Path


@pytest.fixture(scope="module")
def unit() -> Iterator[Unit]:
    machine = LocalMachine(Path(tempfile.mkdtemp(prefix="fuzz-", dir="/tmp")))
    foreign = machine.root / "etc/ssl/certs/ca-certificates.crt"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"the system's CA bundle")
    ctx = charm_context(machine)
    state = ctx.run(ctx.on.install(), unit_state(free_port()))
    assert state.unit_status.name == "active"
    yield Unit(machine, ctx, state, dict(state.config), foreign)
    machine.close()
    shutil.rmtree(machine.root, ignore_errors=True)
