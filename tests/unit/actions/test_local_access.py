"""How skopeo reaches this unit's registry: never through a proxy, its name on loopback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from actions.push import _direct_environment, _resolving_to
from workload.registry_api import LocalAccess, loopback_address

ACCESS = LocalAccess(
    "registry.example.test", 443, tls=True, address="127.0.0.9", name_on_loopback=True
)


def test_skopeo_never_reaches_our_registry_through_a_proxy(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("no_proxy", "10.0.0.0/8")
    monkeypatch.delenv("NO_PROXY", raising=False)

    env = _direct_environment(ACCESS)

    assert env["NO_PROXY"] == env["no_proxy"] == "10.0.0.0/8,registry.example.test,127.0.0.9"
    assert env["https_proxy"] == "http://proxy.internal:3128", "sources still go through it"


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root, as the charm has")
def test_skopeo_resolves_our_name_to_loopback_in_a_namespace_of_its_own(tmp_path):
    launcher = _resolving_to(ACCESS, tmp_path / "hosts")

    assert (tmp_path / "hosts").read_text().splitlines()[0] == "127.0.0.9 registry.example.test"
    # getent reads /etc/hosts first: the name is found there, no DNS query is made.
    done = subprocess.run(
        [*launcher, "getent", "hosts", ACCESS.host],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert done.stdout.split() == ["127.0.0.9", "registry.example.test"]
    assert ACCESS.host not in Path("/etc/hosts").read_text(), "the machine's file is untouched"


def test_the_registry_answers_on_the_address_it_binds_or_loopback():
    assert loopback_address("") == loopback_address("0.0.0.0") == "127.0.0.1"
    assert loopback_address("127.0.0.9") == "127.0.0.9"
