"""A remote charm's bad data is a status, never a hook error (issue 9).

The registry serves first; then the bad databag arrives and every event
that follows (relation-changed, config-changed, update-status,
upgrade-charm) ends with Blocked or Waiting naming the relation, while the
registry keeps serving what it had.
"""

from __future__ import annotations

import json

import pytest
from ops import testing

from charm_context import charm_context, unit_state, with_relation
from support import pki
from support.files import snapshot
from tls_providers import answered, current_provider_answer, easyrsa_answer

CA = pki.make_ca()
SERVICE = "docker-registry"
GARBAGE_PEM = "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----"


def current_answer(ctx, port) -> tuple[testing.State, testing.Relation, dict]:
    """A serving unit, related to a current provider, and that provider's good answer."""
    tls = testing.Relation("cert-provider", remote_app_name="self-signed-certificates")
    state = ctx.run(ctx.on.install(), unit_state(port, relations=[testing.PeerRelation("peer")]))
    state = ctx.run(ctx.on.relation_created(tls), with_relation(state, tls))
    ours = state.get_relation(tls.id).local_unit_data
    return state, state.get_relation(tls.id), current_provider_answer(ours, CA)


def spoil_certificates(answer: dict, field: str, value: str) -> dict:
    certificates = json.loads(answer["certificates"])
    certificates[0][field] = value
    return {**answer, "certificates": json.dumps(certificates)}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("certificate", GARBAGE_PEM),
        ("ca", GARBAGE_PEM),
        ("certificate_signing_request", "-----BEGIN CERTIFICATE REQUEST-----\nx\n-----END"),
        ("chain", "not a list"),
        ("certificate", "\U0001f680"),
    ],
)
def test_unparsable_current_provider_data_blocks_every_hook(ctx, machine, port, field, value):
    state, relation, answer = current_answer(ctx, port)
    before = snapshot(machine.root)
    bad = answered(relation, remote_app_data=spoil_certificates(answer, field, value))
    state = with_relation(state, bad)
    for event in (
        ctx.on.relation_changed(bad, remote_unit=0),
        ctx.on.config_changed(),
        ctx.on.update_status(),
        ctx.on.upgrade_charm(),
    ):
        state = ctx.run(event, state)
        assert state.unit_status.name in ("blocked", "waiting"), state.unit_status
        assert "cert-provider" in state.unit_status.message
    assert snapshot(machine.root) == before
    assert machine.launches[SERVICE] == 1
    assert machine.running(SERVICE)


def test_a_legacy_provider_with_garbage_blocks(ctx, machine, port):
    request = {"sans": '["127.0.0.1"]', "unit_name": "docker-registry_0", "common_name": "x"}
    answer = {**easyrsa_answer(request, CA), "ca": "\x00\U0001f680", "chain": GARBAGE_PEM}
    state = ctx.run(ctx.on.install(), unit_state(port))
    legacy = testing.Relation(
        "cert-provider", remote_app_name="easyrsa", remote_units_data={0: answer}
    )
    state = ctx.run(ctx.on.relation_changed(legacy, remote_unit=0), with_relation(state, legacy))
    assert state.unit_status.name == "blocked"
    assert state.unit_status.message.startswith("cert-provider sent an unusable certificate")
    assert machine.launches[SERVICE] == 1


@pytest.mark.parametrize("address", ["pröxy.example", "10.0.0.1\nExecStart=x", "", "a b"])
def test_a_bad_proxy_address_on_website_with_a_current_provider(ctx, machine, port, address):
    state, _, _ = current_answer(ctx, port)
    proxy = testing.Relation(
        "website", remote_app_name="haproxy", remote_units_data={0: {"private-address": address}}
    )
    state = ctx.run(ctx.on.relation_changed(proxy, remote_unit=0), with_relation(state, proxy))
    state = ctx.run(ctx.on.config_changed(), state)
    if address:
        assert state.unit_status.name == "blocked"
        assert state.unit_status.message.startswith("website: ")
    assert machine.launches[SERVICE] == 1


@pytest.mark.parametrize(
    "peer_data",
    [
        {"ingress-address": "10.0.0.2\n"},
        {"private-address": "\U0001f680"},
        {"ingress-address": "x" * 300},
    ],
)
def test_an_older_peer_with_a_bad_address_is_left_out(machine, port, peer_data):
    ctx = charm_context(machine, unit_id=1)
    peers = testing.PeerRelation("peer", peers_data={0: peer_data})
    state = ctx.run(ctx.on.config_changed(), unit_state(port, relations=[peers]))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")


def test_a_bad_http_secret_id_from_the_leader_waits(ctx, port):
    peers = testing.PeerRelation("peer", local_app_data={"http-secret-id": "secret:\x00nonsense"})
    state = ctx.run(ctx.on.config_changed(), unit_state(port, leader=False, relations=[peers]))
    assert state.unit_status.name == "waiting"
