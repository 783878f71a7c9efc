"""nrpe-external-master: the check files and the timestamp, across the relation's life."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from ops import testing

from charm_context import tls_config, unit_state
from relations.nrpe import TIMESTAMP_KEY
from support import pki

UNIT = "docker-registry-0"
CA = pki.make_ca("nrpe-ca")


def nrpe_relation(**remote: str) -> testing.SubordinateRelation:
    return testing.SubordinateRelation(
        "nrpe-external-master", remote_app_name="nrpe", remote_unit_data=remote
    )


def with_options(state: testing.State, **options: str) -> testing.State:
    """`state` with options whose names have underscores (the established layers' names)."""
    return dataclasses.replace(state, config={**state.config, **options})


@pytest.fixture
def nagios_dirs(machine):
    """The folders the nrpe subordinate makes when it installs."""
    nrpe_d = machine.root / "etc/nagios/nrpe.d"
    export = machine.root / "var/lib/nagios/export"
    nrpe_d.mkdir(parents=True)
    export.mkdir(parents=True)
    return nrpe_d, export


def test_joining_writes_the_established_files_and_a_timestamp(ctx, port, nagios_dirs):
    nrpe_d, export = nagios_dirs
    relation = nrpe_relation(nagios_host_context="site", nagios_hostname="site-docker-registry-0")
    state = unit_state(port, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    command = nrpe_d / "check_check_http.cfg"
    service = export / f"service__{UNIT}_check_http.cfg"
    assert sorted(p.name for p in nrpe_d.iterdir()) == [command.name]
    assert sorted(p.name for p in export.iterdir()) == [service.name]
    assert command.read_text().endswith(
        f"command[check_http]=/usr/lib/nagios/plugins/check_http -I 127.0.0.1 -p {port}"
        " -e ' 200 OK' -u /\n"
    )
    assert "    host_name                       site-docker-registry-0\n" in service.read_text()
    assert "    servicegroups                   site\n" in service.read_text()
    for path in (command, service):
        assert path.stat().st_mode & 0o777 == 0o644
    stamp = state.get_relation(relation.id).local_unit_data[TIMESTAMP_KEY]
    assert datetime.datetime.fromisoformat(stamp)


def test_options_change_the_files_and_the_timestamp(ctx, port, nagios_dirs):
    _, export = nagios_dirs
    relation = nrpe_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    first = state.get_relation(relation.id).local_unit_data[TIMESTAMP_KEY]
    service = export / f"service__{UNIT}_check_http.cfg"
    assert "host_name                       juju-docker-registry-0\n" in service.read_text()
    state = ctx.run(ctx.on.update_status(), state)
    assert state.get_relation(relation.id).local_unit_data[TIMESTAMP_KEY] == first
    state = with_options(state, nagios_context="prod", nagios_servicegroups="ops,registry")
    state = ctx.run(ctx.on.config_changed(), state)
    assert "host_name                       prod-docker-registry-0\n" in service.read_text()
    assert "servicegroups                   ops,registry\n" in service.read_text()
    assert state.get_relation(relation.id).local_unit_data[TIMESTAMP_KEY] != first


def test_breaking_removes_what_was_written_and_nothing_else(ctx, port, nagios_dirs):
    nrpe_d, export = nagios_dirs
    others = (nrpe_d / "check_load.cfg", export / "service__other-0_check_load.cfg")
    for other in others:
        other.write_text("another charm's\n")
    relation = nrpe_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    assert len(list(nrpe_d.iterdir())) == 2
    state = ctx.run(ctx.on.relation_broken(state.get_relation(relation.id)), state)
    assert sorted(nrpe_d.iterdir()) + sorted(export.iterdir()) == list(others)
    assert all(other.read_text() == "another charm's\n" for other in others)


def test_files_wait_for_the_subordinates_folders(ctx, port, machine):
    relation = nrpe_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    assert TIMESTAMP_KEY not in state.get_relation(relation.id).local_unit_data
    assert not (machine.root / "etc/nagios").exists()
    (machine.root / "etc/nagios/nrpe.d").mkdir(parents=True)
    (machine.root / "var/lib/nagios/export").mkdir(parents=True)
    state = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert TIMESTAMP_KEY in state.get_relation(relation.id).local_unit_data
    assert (machine.root / "etc/nagios/nrpe.d/check_check_http.cfg").is_file()


def test_bad_config_keeps_the_checks_and_blocks_naming_the_option(ctx, port, nagios_dirs):
    nrpe_d, _ = nagios_dirs
    relation = nrpe_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    before = (nrpe_d / "check_check_http.cfg").read_text()
    state = ctx.run(ctx.on.config_changed(), with_options(state, nagios_context="two words"))
    assert state.unit_status == testing.BlockedStatus(
        "Invalid charm config: nagios_context: must be a Nagios name: letters, digits and"
        " _ . @ : + - (not first), no spaces"
    )
    assert (nrpe_d / "check_check_http.cfg").read_text() == before
    state = ctx.run(ctx.on.relation_broken(state.get_relation(relation.id)), state)
    assert list(nrpe_d.iterdir()) == []


def test_a_check_no_longer_wanted_goes(ctx, port, nagios_dirs):
    nrpe_d, export = nagios_dirs
    relation = nrpe_relation()
    config = tls_config(CA, "127.0.0.1")
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    certificate = "check_docker_registry_certificate.cfg"
    assert sorted(p.name for p in nrpe_d.iterdir()) == ["check_check_http.cfg", certificate]
    assert "-S" in (nrpe_d / "check_check_http.cfg").read_text()
    first = state.get_relation(relation.id).local_unit_data[TIMESTAMP_KEY]
    plain = {**state.config, "tls-cert-blob": "", "tls-key-blob": "", "tls-ca-blob": ""}
    state = ctx.run(ctx.on.config_changed(), dataclasses.replace(state, config=plain))
    assert [p.name for p in nrpe_d.iterdir()] == ["check_check_http.cfg"]
    assert [p.name for p in export.iterdir()] == [f"service__{UNIT}_check_http.cfg"]
    assert "-S" not in (nrpe_d / "check_check_http.cfg").read_text()
    assert state.get_relation(relation.id).local_unit_data[TIMESTAMP_KEY] != first
