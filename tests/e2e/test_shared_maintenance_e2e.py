"""Scheduled maintenance with three units on shared S3 storage: one run, and nobody left read-only.

Each unit is a LocalMachine with its own registry on the one Swift (S3)
bucket. The test plays Juju between them: what a unit writes on the peer
relation reaches the others as the relation data of their next
relation-changed hook, and the event a transient timer would dispatch is
emitted when the test says it fires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ops import testing

from charm_context import app_unit_state, charm_context, with_relation
from local_machine import LocalMachine
from relations.peer import ACK_KEY, LEASE_KEY
from support import oci, skopeo
from support.load import Load, Target
from support.wait import free_port, wait_for

pytestmark = pytest.mark.e2e

UNITS = (0, 1, 2)


@dataclasses.dataclass
class Unit:
    """One unit: its machine, its Scenario context and the state Juju would keep for it."""

    n: int
    machine: LocalMachine
    ctx: testing.Context
    state: testing.State
    port: int

    @property
    def name(self) -> str:
        return f"docker-registry/{self.n}"

    def peer(self) -> testing.PeerRelation:
        [peer] = [r for r in self.state.relations if isinstance(r, testing.PeerRelation)]
        return peer

    def emit(self, event: str) -> None:
        """Run the custom event a timer dispatches through juju-exec, as a hook."""
        with self.ctx(self.ctx.on.update_status(), self.state) as manager:
            getattr(manager.charm.on, event).emit()
            self.state = manager.run()

    def relation_changed(self, units: list[Unit], app_data: dict[str, str]) -> None:
        """A peer relation-changed hook that sees the others' data as it is now."""
        peer = self.peer()
        peers_data = {o.n: dict(o.peer().local_unit_data) for o in units if o is not self}
        peer = dataclasses.replace(peer, local_app_data=app_data, peers_data=peers_data)
        state = with_relation(self.state, peer)
        self.state = self.ctx.run(self.ctx.on.relation_changed(peer, remote_unit=0), state)

    def upload_status(self) -> int:
        """What the registry answers to the start of a blob upload: 202 writable, 405 read-only."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v2/shared/app/blobs/uploads/", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as e:
            return e.code


def gc_runs(units: list[Unit]) -> int:
    return sum("garbage-collect" in argv for unit in units for _, argv in unit.machine.commands)


@pytest.fixture
def application(swift, s3_wire, tmp_path):
    """Three units on one S3 bucket with a nightly maintenance window, an image pushed."""

    def start(**options: object) -> list[Unit]:
        config = swift.s3_charm_config(
            f"http://{s3_wire.netloc}", **{"maintenance-schedule": "daily", **options}
        )
        units = []
        for n in UNITS:
            machine = stack.enter_context(LocalMachine.temporary())
            ctx = charm_context(machine, unit_id=n)
            port = free_port()
            state = app_unit_state(n, port, leader=n == 0, units=UNITS, config=config)
            state = ctx.run(ctx.on.config_changed(), state)
            assert state.unit_status.name == "active", machine.log("docker-registry")
            units.append(Unit(n, machine, ctx, state, port))
        assert [bool(u.machine.timers) for u in units] == [True, False, False], "leader only"
        layout = tmp_path / "layout"
        oci.build_image(layout, "v1", layers=[oci.random_layer(4096)])
        skopeo.copy(
            f"oci:{layout}:v1",
            f"docker://127.0.0.1:{units[1].port}/shared/app:v1",
            dest_tls_verify=False,
        )
        return units

    with contextlib.ExitStack() as stack:
        yield start


def test_one_run_for_the_application_every_unit_read_only_during_it_and_writable_after(
    application,
):
    units = application()
    leader, followers = units[0], units[1:]
    manifest = "/v2/shared/app/manifests/v1"
    loads = [
        Load("127.0.0.1", u.port, [Target(manifest, accept=oci.MEDIA_TYPE_MANIFEST)], clients=2)
        for u in units
    ]
    with contextlib.ExitStack() as stack:
        for load in loads:
            stack.enter_context(load)
        for load in loads:
            wait_for(lambda load=load: load.count("ok") >= 4, timeout=60, what="pulls before")

        leader.emit("scheduled_maintenance")
        lease = json.loads(leader.peer().local_app_data[LEASE_KEY])
        assert lease["holder"] == leader.name
        assert leader.upload_status() == 405, "the leader is read-only"
        assert gc_runs(units) == 0, "not before every unit is read-only"
        assert "Read-only for maintenance by docker-registry/0" in leader.state.unit_status.message

        for unit in followers:
            assert unit.upload_status() == 202, "not told yet"
            unit.relation_changed(units, dict(leader.peer().local_app_data))
            assert unit.upload_status() == 405
            assert unit.peer().local_unit_data[ACK_KEY] == lease["run"]
            [(delay, argv)] = unit.machine.delayed_jobs.values()
            assert 60 * 120 < delay <= 60 * 120 + 10, "armed for the lease's expiry"
            assert argv == [
                "/usr/bin/juju-exec",
                unit.name,
                "JUJU_DISPATCH_PATH=hooks/maintenance_lease_expired ./dispatch",
            ]
            assert gc_runs(units) == 0

        leader.relation_changed(units, dict(leader.peer().local_app_data))
        assert gc_runs(units) == 1
        assert LEASE_KEY not in leader.peer().local_app_data, "let go"
        assert leader.upload_status() == 202
        assert "Last maintenance" in leader.state.unit_status.message
        assert "garbage collected on shared storage" in leader.state.unit_status.message

        for unit in followers:
            unit.relation_changed(units, dict(leader.peer().local_app_data))
            assert unit.upload_status() == 202
            assert ACK_KEY not in unit.peer().local_unit_data
        leader.relation_changed(units, dict(leader.peer().local_app_data))
        assert gc_runs(units) == 1, "exactly one run"

        for load in loads:
            done = load.count("ok")
            wait_for(lambda load=load, done=done: load.count("ok") >= done + 4, timeout=60,
                     what="pulls after")  # fmt: skip
    for unit, load in zip(units, loads, strict=True):
        # Refused: while its registry restarts (into read-only and back), as on any restart.
        windows = load.tally.refused_windows()
        longest = f", the longest refusal {max(windows):.2f}s" if windows else ""
        print(f"\n{unit.name} pulls across the window: {dict(load.tally.outcomes)}{longest}")
        assert load.tally.outcomes["cut"] == 0, load.tally.errors
        assert load.tally.outcomes["failed"] == 0, load.tally.errors


def test_a_leader_killed_mid_run_leaves_no_unit_read_only_past_the_lease(application):
    units = application(**{"maintenance-window": 1})
    leader, followers = units[0], units[1:]
    leader.emit("scheduled_maintenance")
    app_data = dict(leader.peer().local_app_data)
    lease = json.loads(app_data[LEASE_KEY])
    for unit in followers:
        unit.relation_changed(units, app_data)
        assert unit.upload_status() == 405
    leader.machine.close()  # killed: no hook of it runs again, its registry is gone

    # Juju elects another leader; it sees the lease and waits for it to end.
    new_leader = followers[0]
    new_leader.state = dataclasses.replace(new_leader.state, leader=True)
    new_leader.state = new_leader.ctx.run(new_leader.ctx.on.leader_elected(), new_leader.state)
    assert new_leader.upload_status() == 405, "the lease still holds"
    assert new_leader.peer().local_app_data[LEASE_KEY] == app_data[LEASE_KEY]
    followers[1].state = followers[1].ctx.run(
        followers[1].ctx.on.update_status(), followers[1].state
    )
    assert followers[1].upload_status() == 405

    wait_for(lambda: time.time() > lease["expires"], timeout=90, what="the lease to expire")
    for unit in followers:
        [(_, argv)] = unit.machine.delayed_jobs.values()
        assert argv[-1] == "JUJU_DISPATCH_PATH=hooks/maintenance_lease_expired ./dispatch"
        unit.emit("maintenance_lease_expired")  # what the armed timer dispatches
        assert unit.upload_status() == 202, f"{unit.name} writable after the lease"
        assert ACK_KEY not in unit.peer().local_unit_data
    assert LEASE_KEY not in new_leader.peer().local_app_data, "the new leader let go of it"
    assert gc_runs(units) == 0, "nothing collected without every unit read-only"


def test_a_run_does_not_start_while_a_lease_holds_and_one_unit_alone_collects_at_once(
    swift, s3_wire, tmp_path
):
    config = swift.s3_charm_config(f"http://{s3_wire.netloc}", **{"maintenance-schedule": "daily"})
    with LocalMachine.temporary() as machine:
        ctx = charm_context(machine)
        port = free_port()
        state = app_unit_state(0, port, leader=True, units=[0], config=config)
        unit = Unit(0, machine, ctx, state, port)
        unit.state = ctx.run(ctx.on.config_changed(), unit.state)
        unit.emit("scheduled_maintenance")
        assert gc_runs([unit]) == 1, "no other unit to wait for"
        assert "nothing stored yet" in unit.state.unit_status.message, "an empty bucket"
        assert LEASE_KEY not in unit.peer().local_app_data
        assert unit.upload_status() == 202
        metrics = machine.root / "var/lib/docker-registry-charm/metrics/maintenance.prom"
        assert "docker_registry_maintenance_last_run_success 1\n" in metrics.read_text()
        assert Path(metrics).stat().st_mode & 0o777 == 0o644
