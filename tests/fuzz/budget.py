"""The fuzz budget: seeded, fixed example counts; and the tally the summary prints."""

from __future__ import annotations

import collections

from hypothesis import HealthCheck, settings

COUNTS: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
"""Per input family, how many examples ended how (refused, accepted, ...)."""


def budget(max_examples: int) -> settings:
    """Hypothesis settings that reproduce: derandomized, no example database, no deadline."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )
