"""The fuzz tests: a fixed, seeded budget; their counts are printed after the run."""

from __future__ import annotations

import pytest

from fuzz.budget import COUNTS


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
