"""The maintenance-schedule option: a timer on the leader only, validated by systemd."""

from __future__ import annotations

import dataclasses

import pytest

from charm_context import unit_state, with_config
from state.maintenance import SERVICE_PATH, TIMER, TIMER_PATH, schedule_problem
from state.settings import METRICS_TEXTFILE_DIR

SCHEDULE = "Sun *-*-* 03:00:00"


def test_the_timer_is_on_the_leader_only_and_goes_with_the_option(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port, config={"maintenance-schedule": SCHEDULE}))
    timer = machine.root / TIMER_PATH.lstrip("/")
    service = machine.root / SERVICE_PATH.lstrip("/")
    assert f"OnCalendar={SCHEDULE}\n" in timer.read_text()
    assert "/usr/bin/juju-exec docker-registry/0 " in service.read_text()
    assert "JUJU_DISPATCH_PATH=hooks/scheduled_maintenance ./dispatch" in service.read_text()
    assert machine.timers == {TIMER}
    reloads = machine.daemon_reloads

    state = ctx.run(ctx.on.update_status(), state)
    assert machine.daemon_reloads == reloads, "the same timer is left alone"

    ctx.run(ctx.on.update_status(), dataclasses.replace(state, leader=False))
    assert not timer.exists()
    assert not service.exists()
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
def test_a_window_on_shared_object_storage_changes_nothing_and_says_why(ctx, machine, port):
    s3 = {"storage-s3-region": "us-east-1", "storage-s3-bucket": "images"}
    state = unit_state(port, config={**s3, "maintenance-schedule": "daily"})
    with ctx(ctx.on.pre_series_upgrade(), state) as manager:  # an event that does not reconcile
        manager.charm.on.scheduled_maintenance.emit()
        state = manager.run()
    assert machine.launches["docker-registry"] == 0, "never read-only, nothing restarted"
    [stored] = [s for s in state.stored_states if "last_maintenance" in s.content]
    last = stored.content["last_maintenance"]
    assert last["ok"] is False
    assert last["detail"].startswith("images are in shared object storage")
    metrics = machine.root / METRICS_TEXTFILE_DIR.lstrip("/") / "maintenance.prom"
    assert "docker_registry_maintenance_last_run_success 0\n" in metrics.read_text()
    assert "docker_registry_maintenance_last_run_freed_bytes -1\n" in metrics.read_text()
