"""From another host, only `/metrics` of the registry's debug server is reachable, if anything.

"Another host" is a network namespace joined to this one by a veth pair the
test makes; the unit listens on the veth's address (as on a real NIC).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from ops import testing

from charm_context import unit_state
from relations.cos_agent import ENDPOINT

pytestmark = pytest.mark.e2e

UNIT_ADDRESS = "10.213.77.1"
REMOTE_ADDRESS = "10.213.77.2"


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def remote_host() -> Iterator[str]:
    """A network namespace at REMOTE_ADDRESS that reaches this host at UNIT_ADDRESS."""
    name = f"drtest{os.getpid()}"
    host_side, remote_side = f"{name}a", f"{name}b"
    if ip("netns", "add", name).returncode != 0:
        pytest.skip("cannot make a network namespace here (needs root)")
    try:
        for step in (
            ("link", "add", host_side, "type", "veth", "peer", "name", remote_side),
            ("link", "set", remote_side, "netns", name),
            ("addr", "add", f"{UNIT_ADDRESS}/30", "dev", host_side),
            ("link", "set", host_side, "up"),
            ("-n", name, "addr", "add", f"{REMOTE_ADDRESS}/30", "dev", remote_side),
            ("-n", name, "link", "set", remote_side, "up"),
            ("-n", name, "link", "set", "lo", "up"),
        ):
            result = ip(*step)
            assert result.returncode == 0, result.stderr
        yield name
    finally:
        ip("link", "del", host_side)
        ip("netns", "del", name)


def status_from(namespace: str, url: str, method: str = "GET") -> str:
    """The HTTP status `curl` gets from inside `namespace`; "000": no connection."""
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "5",
            "-X",
            method,
            "-w",
            "%{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout


@pytest.mark.parametrize(
    ("config", "cos_agent", "metrics"),
    [
        ({"prometheus-metrics": True}, False, "200"),
        (
            {"prometheus-metrics": True, "cache-mirrors": "docker.io: http://127.0.0.1:9"},
            False,
            "200",
        ),
        ({"prometheus-metrics": True}, True, "000"),
        ({"prometheus-metrics": False}, False, "000"),
    ],
    ids=["metrics", "metrics-with-mirrors", "cos-agent", "no-metrics"],
)
def test_profiler_and_vars_are_refused_from_another_host(
    ctx, machine, port, remote_host, config, cos_agent, metrics
):
    machine.listen_host = UNIT_ADDRESS
    relations: list[testing.RelationBase] = [testing.PeerRelation("peer")]
    if cos_agent:
        relations.append(testing.Relation(ENDPOINT, remote_app_name="grafana-agent"))
    state = unit_state(port, config=config, relations=relations)
    state = ctx.run(ctx.on.config_changed(), state)
    debug_port = int(state.config["debug-port"])
    assert status_from(remote_host, f"http://{UNIT_ADDRESS}:{port}/v2/") == "200", "serving"
    # debug-port, then the loopback metrics servers above it (state/observability.py).
    for target in range(debug_port, debug_port + 5):
        base = f"http://{UNIT_ADDRESS}:{target}"
        for path in ("/debug/pprof/", "/debug/pprof/goroutine?debug=2", "/debug/vars"):
            assert status_from(remote_host, base + path) in ("403", "000"), (target, path)
        assert status_from(remote_host, f"{base}/metrics", "POST") in ("403", "000")
    assert status_from(remote_host, f"http://{UNIT_ADDRESS}:{debug_port}/metrics") == metrics
    if metrics == "200":  # the profiler is there, on loopback only
        local = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--noproxy",
                "*",
                f"http://127.0.0.1:{debug_port + 1}/debug/pprof/",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert local.stdout == "200"
