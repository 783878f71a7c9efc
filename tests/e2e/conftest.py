"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.containerd import Containerd


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    """A real containerd daemon, pulling with `ctr` like a cluster node."""
    with Containerd() as daemon:
        yield daemon
