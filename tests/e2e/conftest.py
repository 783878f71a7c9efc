"""Fixtures for the end-to-end tests: one containerd daemon serves every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.containerd import Containerd


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    """A containerd daemon on its own socket and root, stopped after the run."""
    with Containerd() as daemon:
        yield daemon
