"""Several units behind haproxy, configured as the haproxy charms configure it.

Each unit's `website` databag comes from the charm itself (Scenario, one
LocalMachine per unit, each with a `website` address of its own);
tests/support/haproxy_charm.py makes of them what the haproxy charms make
(the classic charm and the ops operator), and a real haproxy runs the result.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from charm_context import PROXY_ADDRESS, app_unit_state, charm_context, website_address
from local_machine import LocalMachine
from support import haproxy_charm
from support.haproxy import HAProxy, servers_by_backend
from support.wait import free_port, port_open

pytestmark = pytest.mark.e2e
APP = "docker-registry"
Databags = dict[str, dict[str, str]]


def website_databag(unit: int, port: int, *, leader: bool, units: list[int]) -> dict[str, str]:
    """What unit `unit` publishes on `website` after a relation-changed from haproxy."""
    with LocalMachine.temporary() as machine:
        ctx = charm_context(machine, unit_id=unit)
        state = app_unit_state(unit, port, leader=leader, units=units)
        proxy = state.get_relations("website")[0]
        state = ctx.run(ctx.on.relation_changed(proxy, remote_unit=0), state)
    databag = state.get_relations("website")[0].local_unit_data
    shared = state.get_relations("peer")[0].local_unit_data
    assert shared["website-address"] == website_address(unit)
    return dict(databag)


@dataclasses.dataclass(frozen=True)
class Leadership:
    port: int
    states: dict[str, Databags]
    """Every unit's databag by unit name, in each leadership state, in the order they happen."""


@pytest.fixture(scope="module")
def leadership() -> Leadership:
    port = free_port()

    def bags(leader: int | None, units: list[int]) -> Databags:
        return {
            f"{APP}/{n}": website_databag(n, port, leader=n == leader, units=units) for n in units
        }

    followers_first = bags(None, [1, 2])
    return Leadership(
        port,
        {
            "before the leader publishes": {f"{APP}/0": {}, **followers_first},
            "leader 0 of 3": bags(0, [0, 1, 2]),
            "leader 0 gone, none elected yet": bags(None, [1, 2]),
            "leader 1 of 2": bags(1, [1, 2]),
        },
    )


def old_revision(databags: Databags, port: int) -> Databags:
    """The same units had followers also published their address and port (older revisions)."""
    old = {}
    for unit, bag in databags.items():
        address = website_address(int(unit.rpartition("/")[2]))
        follower = {"hostname": address, "private-address": address, "port": str(port)}
        old[unit] = bag if "services" in bag else {**bag, **follower}
    return old


@pytest.mark.parametrize("flavour", ["classic", "ops"])
def test_the_emulation_reproduces_what_followers_publishing_did(leadership, flavour):
    """As measured with the haproxy charms: each follower twice; port 80 without a leader."""
    port = leadership.port
    three = haproxy_charm.services(
        old_revision(leadership.states["leader 0 of 3"], port), flavour=flavour
    )
    assert three is not None
    ours = next(service for service in three if service.name == APP)
    assert [server[0] for server in ours.servers] == [
        f"{APP}-0",
        f"{APP}-1",
        f"{APP}-2",
        f"{APP}-1-{port}",
        f"{APP}-2-{port}",
    ]
    gone = haproxy_charm.services(
        old_revision(leadership.states["leader 0 gone, none elected yet"], port), flavour=flavour
    )
    assert gone is not None
    assert [(s.port, len(s.servers)) for s in gone] == [(80, 2)]
    assert gone[0].servers[0][3] == "maxconn 100 cookie S{i} check"


@pytest.mark.parametrize("flavour", ["classic", "ops"])
def test_one_server_per_unit_in_every_leadership_state(leadership, flavour, tmp_path: Path):
    port = leadership.port
    stats = tmp_path / "stats.sock"
    expected: dict[str, list[int] | None] = {
        "before the leader publishes": None,  # the charms write nothing
        "leader 0 of 3": [0, 1, 2],
        "leader 0 gone, none elected yet": None,  # haproxy keeps what it had
        "leader 1 of 2": [1, 2],
    }
    assert list(expected) == list(leadership.states)
    proxy: HAProxy | None = None
    try:
        for name, units in expected.items():
            found = haproxy_charm.services(leadership.states[name], flavour=flavour)
            if units is None:
                assert found is None, name
            else:
                assert found is not None, name
                if proxy is not None:
                    proxy.stop()
                cfg = haproxy_charm.haproxy_cfg(
                    found, bind_host=PROXY_ADDRESS, stats_socket=str(stats)
                )
                proxy = HAProxy(cfg, wait_ports=[port], host=PROXY_ADDRESS).start()
                backends = servers_by_backend(stats)
                assert {
                    backend: [(s["svname"], s["bck"]) for s in servers]
                    for backend, servers in backends.items()
                    if servers
                } == {APP: [(f"{APP}-{n}", "0" if n == units[0] else "1") for n in units]}, name
                server_lines = [
                    line.split()[2] for line in cfg.splitlines() if line.startswith("    server ")
                ]
                assert server_lines == [f"{website_address(n)}:{port}" for n in units]
            if proxy is not None:
                assert port_open(PROXY_ADDRESS, port), name
    finally:
        if proxy is not None:
            proxy.stop()
