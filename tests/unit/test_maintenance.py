"""maintenance-schedule: a timer per disk, checked by systemd; a lease on shared storage."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import yaml
from ops import testing

from charm_context import HTTP_SECRET, SECRET_ID_KEY, unit_state, with_config, with_relation
from relations.peer import ACK_KEY, LEASE_KEY
from state.maintenance import (
    SERVICE_PATH,
    TIMER,
    TIMER_PATH,
    Lease,
    LeaseStep,
    lease_step,
    schedule_problem,
)

SCHEDULE = "Sun *-*-* 03:00:00"
S3 = {"storage-s3-region": "us-east-1", "storage-s3-bucket": "images"}


def test_with_filesystem_storage_every_unit_has_the_timer_and_it_goes_with_the_option(
    ctx, machine, port
):
    state = ctx.run(ctx.on.install(), unit_state(port, config={"maintenance-schedule": SCHEDULE}))
    timer = machine.root / TIMER_PATH.lstrip("/")
    service = machine.root / SERVICE_PATH.lstrip("/")
    assert f"OnCalendar={SCHEDULE}\n" in timer.read_text()
    assert "/usr/bin/juju-exec docker-registry/0 " in service.read_text()
    assert "JUJU_DISPATCH_PATH=hooks/scheduled_maintenance ./dispatch" in service.read_text()
    assert machine.timers == {TIMER}
    reloads = machine.daemon_reloads

    state = ctx.run(ctx.on.update_status(), dataclasses.replace(state, leader=False))
    assert machine.daemon_reloads == reloads, "its own disk: the same timer is left alone"
    assert machine.timers == {TIMER}

    ctx.run(ctx.on.config_changed(), with_config(state, maintenance_schedule=""))
    assert not timer.exists()
    assert not service.exists()
    assert machine.timers == set()


def test_with_shared_storage_only_the_leader_has_the_timer(ctx, machine, port):
    config = {**S3, "maintenance-schedule": SCHEDULE}
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    assert machine.timers == {TIMER}
    ctx.run(ctx.on.update_status(), dataclasses.replace(state, leader=False))
    assert machine.timers == set()


def test_a_schedule_systemd_rejects_blocks_and_writes_no_timer(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    state = ctx.run(ctx.on.config_changed(), with_config(state, maintenance_schedule="Funday"))
    assert state.unit_status.name == "blocked"
    assert "maintenance-schedule: systemd does not accept 'Funday'" in state.unit_status.message
    assert not (machine.root / TIMER_PATH.lstrip("/")).exists()
    assert machine.timers == set()
    state = ctx.run(ctx.on.action("disk-usage"), state)
    assert state.unit_status.name == "blocked", "an action's hook does not hide it"
    state = ctx.run(ctx.on.config_changed(), with_config(state, maintenance_schedule="daily"))
    assert state.unit_status.name == "active"
    assert machine.timers == {TIMER}


@pytest.mark.parametrize("value", ["daily\n[Service]", "x;rm", "a" * 201, "$(id)"])
def test_a_schedule_that_could_reach_other_lines_is_refused_by_shape(value):
    assert schedule_problem(value) is not None


def test_calendar_shapes_pass():
    for value in ("", "daily", SCHEDULE, "Mon..Fri 22:30", "*-*-1/2 04:00 UTC"):
        assert schedule_problem(value) is None


@pytest.mark.filterwarnings("ignore:pre-series-upgrade events:DeprecationWarning")
def emit(ctx, state: testing.State, event: str) -> testing.State:
    """The custom event a timer dispatches, run as its own hook."""
    with ctx(ctx.on.update_status(), state) as manager:
        getattr(manager.charm.on, event).emit()
        return manager.run()


def shared_state(port: int, *, leader: bool, app_data=None, acks=("", "")) -> testing.State:
    """Unit 0 of three on S3; the others' last word on the lease in `acks`."""
    peer = testing.PeerRelation(
        "peer",
        local_app_data={SECRET_ID_KEY: HTTP_SECRET.id, **(app_data or {})},
        peers_data={n: ({ACK_KEY: ack} if ack else {}) for n, ack in enumerate(acks, 1)},
    )
    config = {**S3, "maintenance-schedule": "daily"}
    return unit_state(port, leader=leader, config=config, relations=[peer], secrets=[HTTP_SECRET])


def lease_data(run="ab12", holder="docker-registry/0", expires_in=3600.0) -> dict[str, str]:
    lease = {"run": run, "holder": holder, "expires": time.time() + expires_in}
    return {LEASE_KEY: json.dumps(lease)}


def peer_of(state: testing.State) -> testing.PeerRelation:
    [peer] = [r for r in state.relations if isinstance(r, testing.PeerRelation)]
    return peer


def registry_read_only(machine) -> bool:
    config = yaml.safe_load((machine.root / "etc/docker/registry/config.yml").read_text())
    return config["storage"]["maintenance"]["readonly"]["enabled"]


def test_on_shared_storage_the_leader_takes_a_lease_and_waits_for_every_unit(ctx, machine, port):
    state = emit(ctx, shared_state(port, leader=True), "scheduled_maintenance")
    lease = json.loads(peer_of(state).local_app_data[LEASE_KEY])
    assert lease["holder"] == "docker-registry/0"
    assert 119 * 60 < lease["expires"] - time.time() <= 120 * 60, "maintenance-window"
    assert peer_of(state).local_unit_data[ACK_KEY] == lease["run"]
    assert registry_read_only(machine)
    assert not any("garbage-collect" in argv for _, argv in machine.commands), "others wait"

    state = emit(ctx, state, "scheduled_maintenance")
    assert json.loads(peer_of(state).local_app_data[LEASE_KEY]) == lease, "one run at a time"


def test_a_unit_follows_the_lease_read_only_and_arms_its_own_end(ctx, machine, port):
    state = shared_state(port, leader=False, app_data=lease_data())
    state = ctx.run(ctx.on.relation_changed(peer_of(state), remote_unit=1), state)
    assert registry_read_only(machine)
    assert peer_of(state).local_unit_data[ACK_KEY] == "ab12"
    [(delay, argv)] = machine.delayed_jobs.values()
    assert 3600 - 5 < delay <= 3600 + 10
    assert argv[-1] == "JUJU_DISPATCH_PATH=hooks/maintenance_lease_expired ./dispatch"

    # What the unit sees when its timer fires.
    app_data = {**peer_of(state).local_app_data, **lease_data(expires_in=-1)}
    expired = dataclasses.replace(peer_of(state), local_app_data=app_data)
    state = emit(ctx, with_relation(state, expired), "maintenance_lease_expired")
    assert not registry_read_only(machine)
    assert ACK_KEY not in peer_of(state).local_unit_data
    assert "Read-only" not in state.unit_status.message


def test_the_leader_lets_go_of_an_expired_lease_and_says_who_it_waited_for(ctx, machine, port):
    state = shared_state(port, leader=True, app_data=lease_data(expires_in=-1), acks=("ab12", ""))
    state = ctx.run(ctx.on.update_status(), state)
    assert LEASE_KEY not in peer_of(state).local_app_data
    assert not registry_read_only(machine)
    [stored] = [s for s in state.stored_states if "last_maintenance" in s.content]
    last = stored.content["last_maintenance"]
    assert not last["ok"]
    assert last["detail"] == "the lease expired waiting for docker-registry/2"
    assert not any("garbage-collect" in argv for _, argv in machine.commands)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"run": "ab12", "holder": "docker-registry/0"}),
        json.dumps({"run": "ab12", "holder": "docker-registry/0", "expires": "soon"}),
        '{"run": "ab12", "holder": "docker-registry/0", "expires": Infinity}',
        json.dumps(
            {"run": "ab12", "holder": "docker-registry/0", "expires": time.time() + 30 * 86400}
        ),
        json.dumps({"run": "ab; rm", "holder": "docker-registry/0", "expires": time.time() + 60}),
        json.dumps({"run": "ab12", "holder": "Ready\nat", "expires": time.time() + 60}),
        json.dumps(["r1"]),
    ],
    ids=[
        "not-json",
        "no-expiry",
        "text-expiry",
        "infinite",
        "past-the-longest-window",
        "run-not-a-unit-name",
        "holder-not-a-unit",
        "not-an-object",
    ],
)
def test_a_lease_the_charm_could_not_have_written_leaves_the_unit_writable(
    ctx, machine, port, text
):
    state = shared_state(port, leader=False, app_data={LEASE_KEY: text})
    state = ctx.run(ctx.on.relation_changed(peer_of(state), remote_unit=1), state)
    assert not registry_read_only(machine)
    assert ACK_KEY not in peer_of(state).local_unit_data


@pytest.mark.parametrize("minutes", [0, -5, 7 * 24 * 60 + 1])
def test_a_window_out_of_range_blocks_naming_the_option(ctx, port, minutes):
    state = ctx.run(
        ctx.on.config_changed(), unit_state(port, config={"maintenance-window": minutes})
    )
    assert state.unit_status.name == "blocked"
    assert "maintenance-window: must be 1 to 10080 minutes" in state.unit_status.message


LEASE = Lease("ab12", "docker-registry/0", expires=1000.0)


@pytest.mark.parametrize(
    ("now", "unit", "leader", "read_only", "here", "others", "expected"),
    [
        # A follower says so once, arming its timer; then only says so.
        (10, "docker-registry/1", False, True, "", {}, LeaseStep("ab12", arm=LEASE)),
        (10, "docker-registry/1", False, True, "ab12", {}, LeaseStep("ab12")),
        # Not read-only (yet): no word, nothing armed.
        (10, "docker-registry/1", False, False, "", {}, LeaseStep()),
        # Past the expiry a follower takes its word back; the leader lets go too.
        (1000, "docker-registry/1", False, True, "ab12", {}, LeaseStep()),
        (
            1000,
            "docker-registry/0",
            True,
            True,
            "ab12",
            {"docker-registry/1": "ab12", "docker-registry/2": ""},
            LeaseStep(let_go=True, failure="the lease expired waiting for docker-registry/2"),
        ),
        # A new leader lets go of the dead one's lease without a run to record.
        (1000, "docker-registry/1", True, True, "ab12", {}, LeaseStep(let_go=True)),
        # The holder collects when every other unit said so, not before.
        (
            10,
            "docker-registry/0",
            True,
            True,
            "ab12",
            {"docker-registry/1": "ab12", "docker-registry/2": "old"},
            LeaseStep("ab12"),
        ),
        (
            10,
            "docker-registry/0",
            True,
            True,
            "ab12",
            {"docker-registry/1": "ab12", "docker-registry/2": "ab12"},
            LeaseStep("ab12", collect=LEASE),
        ),
        # A new leader never collects under another's lease.
        (10, "docker-registry/1", True, True, "ab12", {}, LeaseStep("ab12")),
    ],
)
def test_the_lease_protocol_step_by_step(now, unit, leader, read_only, here, others, expected):
    step = lease_step(
        LEASE,
        now,
        unit=unit,
        leader=leader,
        read_only=read_only,
        acknowledged_here=here,
        acknowledged=others,
    )
    assert step == expected


def test_without_a_lease_nothing_happens_and_a_word_is_taken_back():
    for leader in (True, False):
        step = lease_step(
            None,
            10,
            unit="docker-registry/0",
            leader=leader,
            read_only=False,
            acknowledged_here="ab12",
            acknowledged={},
        )
        assert step == LeaseStep()
