"""Fixtures for the end-to-end tests: one containerd and one Swift serve every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.containerd import Containerd
from support.swift import SwiftAllInOne
from support.tcp_relay import TcpRelay


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    """A containerd daemon on its own socket and root, stopped after the run."""
    with Containerd() as daemon:
        yield daemon


@pytest.fixture(scope="session")
def swift() -> Iterator[SwiftAllInOne]:
    """OpenStack Swift on loopback (Debian's packages), serving Swift and S3 to every test."""
    with SwiftAllInOne() as server:
        yield server


@pytest.fixture
def s3_wire(swift: SwiftAllInOne, monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpRelay]:
    """The S3 endpoint registries are given: a relay to Swift that keeps the requests.

    A registry started by systemd does not inherit the test's environment;
    `AWS_CA_BUNDLE` there makes the registry's AWS SDK refuse its own HTTP
    transport (`LoadCustomCABundleError`), so it goes.
    """
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with TcpRelay(("127.0.0.1", swift.port)) as relay:
        yield relay
