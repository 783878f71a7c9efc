"""Exact databag contents of each endpoint across join / change / depart / broken."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from ops import testing

from charm_context import (
    charm_context,
    tls_config,
    unit_state,
    with_config,
    with_relation,
)
from relations.peer import SECRET_ID_KEY, SECRET_LABEL, WEBSITE_ADDRESS_KEY
from support import pki
from tls_providers import answered as tls_answered
from tls_providers import current_provider_answer, easyrsa_answer

CA = pki.make_ca("relations-ca")


CLIENT_KEYS = ("registry_netloc", "registry_url", "basic_user", "basic_password", "tls_ca")


def decoded(databag) -> dict:
    """Read our keys the way the reactive containerd charm does (JSON-decode each value)."""
    return {key: json.loads(databag[key]) for key in CLIENT_KEYS}


def registry_relation() -> testing.Relation:
    return testing.Relation("docker-registry", remote_app_name="containerd")


def haproxy_relation(address: str = "10.9.9.9") -> testing.Relation:
    return testing.Relation(
        "website",
        remote_app_name="haproxy",
        remote_units_data={0: {"ingress-address": address, "private-address": address}},
    )


def peers(*units: tuple[int, str]) -> testing.PeerRelation:
    return testing.PeerRelation(
        "peer", peers_data={n: {"ingress-address": a, "private-address": a} for n, a in units}
    )


# --- docker-registry -------------------------------------------------------


def test_docker_registry_publishes_json_encoded_client_settings(ctx, port):
    relation = registry_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    databag = state.get_relation(relation.id).local_unit_data
    assert databag["registry_netloc"] == json.dumps(f"127.0.0.1:{port}")
    assert databag["basic_user"] == "null"
    assert decoded(databag) == {
        "registry_netloc": f"127.0.0.1:{port}",
        "registry_url": f"http://127.0.0.1:{port}",
        "basic_user": None,
        "basic_password": None,
        "tls_ca": None,
    }


def test_docker_registry_credential_is_the_relations_own_never_the_admin(ctx, port):
    relation = registry_relation()
    state = unit_state(
        port,
        config={"auth-basic-password": "12345"},
        relations=[testing.PeerRelation("peer"), relation],
    )
    state = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    databag = state.get_relation(relation.id).local_unit_data
    user, password = json.loads(databag["basic_user"]), json.loads(databag["basic_password"])
    assert user == f"juju-containerd-{relation.id}"
    assert isinstance(password, str)
    assert len(password) >= 24
    assert "12345" not in databag.values()
    state = ctx.run(ctx.on.config_changed(), with_config(state, auth_basic_password=""))
    databag = state.get_relation(relation.id).local_unit_data
    assert (databag["basic_user"], databag["basic_password"]) == ("null", "null")


def test_docker_registry_url_follows_http_host(ctx, port):
    relation = registry_relation()
    config = {"http-host": "http://registry.example.com:80/"}
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.config_changed(), state)
    data = decoded(state.get_relation(relation.id).local_unit_data)
    assert data["registry_netloc"] == "registry.example.com:80"
    assert data["registry_url"] == "http://registry.example.com:80"


def test_docker_registry_tls_from_config_publishes_the_ca(ctx, port):
    config = tls_config(CA, "127.0.0.1")
    relation = registry_relation()
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.config_changed(), state)
    data = decoded(state.get_relation(relation.id).local_unit_data)
    assert data["tls_ca"] == CA.cert_pem.decode()
    assert data["registry_url"] == f"https://127.0.0.1:{port}"


def test_docker_registry_is_identical_on_every_unit(machine, port):
    """A follower tells clients the oldest unit's address, as the leader does."""
    secret = testing.Secret({"http-secret": "shared"}, owner="app", label=SECRET_LABEL)
    peer = testing.PeerRelation(
        "peer",
        local_app_data={SECRET_ID_KEY: secret.id},
        peers_data={0: {"ingress-address": "127.0.0.9"}, 2: {"ingress-address": "127.0.0.3"}},
    )
    relation = registry_relation()
    state = unit_state(port, leader=False, relations=[peer, relation], secrets=[secret])
    follower = charm_context(machine, unit_id=1)
    state = follower.run(follower.on.relation_changed(relation, remote_unit=0), state)
    data = decoded(state.get_relation(relation.id).local_unit_data)
    assert data["registry_netloc"] == f"127.0.0.9:{port}"


def test_docker_registry_goes_through_the_proxy(ctx, port):
    relation, proxy = registry_relation(), haproxy_relation("10.9.9.9")
    state = unit_state(port, relations=[testing.PeerRelation("peer"), relation, proxy])
    state = ctx.run(ctx.on.relation_joined(proxy, remote_unit=0), state)
    data = decoded(state.get_relation(relation.id).local_unit_data)
    assert data["registry_netloc"] == f"10.9.9.9:{port}"
    assert data["registry_url"] == f"http://10.9.9.9:{port}"
    assert state.unit_status == testing.ActiveStatus(
        f"Ready at 10.9.9.9:{port} (http, proxied; containerd nodes need TLS)."
    )
    state = ctx.run(ctx.on.relation_broken(state.get_relation(proxy.id)), state)
    data = decoded(state.get_relation(relation.id).local_unit_data)
    assert data["registry_netloc"] == f"127.0.0.1:{port}"


def test_plain_http_to_containerd_says_nodes_need_tls(ctx, port):
    """The containerd charm gives nodes a scheme-less endpoint, which means https."""
    relation = registry_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    assert state.unit_status == testing.ActiveStatus(
        f"Ready at 127.0.0.1:{port} (http; containerd nodes need TLS)."
    )
    broken = ctx.run(ctx.on.relation_broken(state.get_relation(relation.id)), state)
    assert broken.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    state = ctx.run(ctx.on.config_changed(), with_config(state, **tls_config(CA, "127.0.0.1")))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (https).")


# --- website ---------------------------------------------------------------


def services(state, relation) -> list[dict]:
    return yaml.safe_load(state.get_relation(relation.id).local_unit_data["services"])


def test_website_single_unit(ctx, port):
    proxy = haproxy_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), proxy])
    state = ctx.run(ctx.on.relation_joined(proxy, remote_unit=0), state)
    databag = state.get_relation(proxy.id).local_unit_data
    assert databag["hostname"] == "127.0.0.1"
    assert databag["private-address"] == "127.0.0.1"
    assert databag["port"] == str(port)
    checks = "check inter 2000 rise 2 fall 5 maxconn 4096"
    assert services(state, proxy) == [
        {
            "service_name": "docker-registry",
            "service_host": "0.0.0.0",
            "service_port": port,
            "service_options": ["mode http", "balance leastconn", "option httpchk GET / HTTP/1.0"],
            "server_options": f"{checks} backup",
            "servers": [["docker-registry-0", "127.0.0.1", port, checks]],
        }
    ]


def test_website_oldest_unit_primary_others_backup(ctx, port):
    proxy = haproxy_relation()
    peer = peers((2, "127.0.0.3"), (1, "127.0.0.2"))
    state = unit_state(port, relations=[peer, proxy])
    state = ctx.run(ctx.on.relation_joined(peer, remote_unit=1), state)
    checks = "check inter 2000 rise 2 fall 5 maxconn 4096"
    assert services(state, proxy)[0]["servers"] == [
        ["docker-registry-0", "127.0.0.1", port, checks],
        ["docker-registry-1", "127.0.0.2", port, f"{checks} backup"],
        ["docker-registry-2", "127.0.0.3", port, f"{checks} backup"],
    ]
    # A unit departs: the stanza follows.
    departed = dataclasses.replace(
        state.get_relation(peer.id), peers_data={1: {"ingress-address": "127.0.0.2"}}
    )
    state = ctx.run(
        ctx.on.relation_departed(departed, remote_unit=2, departing_unit=2),
        with_relation(state, departed),
    )
    assert [s[0] for s in services(state, proxy)[0]["servers"]] == [
        "docker-registry-0",
        "docker-registry-1",
    ]


def test_website_all_active_with_object_storage(ctx, port):
    proxy = haproxy_relation()
    state = unit_state(
        port,
        # The endpoint is a closed loopback port: nothing leaves the machine.
        config={
            "storage-s3-region": "r",
            "storage-s3-bucket": "b",
            "storage-s3-regionendpoint": "http://127.0.0.1:9",
        },
        relations=[peers((1, "127.0.0.2")), proxy],
    )
    state = ctx.run(ctx.on.relation_changed(proxy, remote_unit=0), state)
    assert all("backup" not in server[3] for server in services(state, proxy)[0]["servers"])


def test_website_tls_is_passed_through(ctx, port):
    config = tls_config(CA, "10.9.9.9", "127.0.0.1")
    proxy = haproxy_relation()
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), proxy])
    state = ctx.run(ctx.on.relation_changed(proxy, remote_unit=0), state)
    service = services(state, proxy)[0]
    assert service["service_options"] == ["mode tcp", "balance leastconn"]
    assert service["servers"][0][3].endswith("check-ssl verify none")
    assert state.unit_status == testing.ActiveStatus(f"Ready at 10.9.9.9:{port} (https, proxied).")


@pytest.mark.parametrize("key", ["hostname", "port", "services"])
def test_website_followers_publish_nothing_and_clear_what_they_published(ctx, port, key):
    """haproxy adds a unit publishing a port as a server of its own: only the leader publishes.

    A unit refreshed from a revision where every unit published keeps its
    old keys until it clears them.
    """
    proxy = testing.Relation(
        "website",
        remote_app_name="haproxy",
        local_unit_data={
            "hostname": "127.0.0.1",
            "private-address": "127.0.0.1",
            "port": str(port),
            "services": "stale",
        },
        remote_units_data={0: {"ingress-address": "10.9.9.9"}},
    )
    secret = testing.Secret({"http-secret": "s"}, owner="app", label=SECRET_LABEL)
    peer = testing.PeerRelation("peer", local_app_data={SECRET_ID_KEY: secret.id})
    state = unit_state(port, leader=False, relations=[peer, proxy], secrets=[secret])
    state = ctx.run(ctx.on.relation_changed(proxy, remote_unit=0), state)
    assert key not in state.get_relation(proxy.id).local_unit_data


def test_website_follower_that_becomes_leader_publishes(ctx, port):
    proxy = haproxy_relation()
    secret = testing.Secret({"http-secret": "s"}, owner="app", label=SECRET_LABEL)
    peer = testing.PeerRelation("peer", local_app_data={SECRET_ID_KEY: secret.id})
    state = unit_state(port, leader=False, relations=[peer, proxy], secrets=[secret])
    state = ctx.run(ctx.on.relation_joined(proxy, remote_unit=0), state)
    assert "port" not in state.get_relation(proxy.id).local_unit_data
    state = ctx.run(ctx.on.leader_elected(), dataclasses.replace(state, leader=True))
    databag = state.get_relation(proxy.id).local_unit_data
    assert databag["port"] == str(port)
    assert services(state, proxy)[0]["service_port"] == port


def test_website_stanza_lists_each_units_website_address(ctx, port):
    """A unit's server address is its `website` binding's, shared over the peer relation."""
    proxy = haproxy_relation()
    peer = testing.PeerRelation(
        "peer",
        peers_data={
            1: {"ingress-address": "10.0.0.2", WEBSITE_ADDRESS_KEY: "192.168.0.2"},
            # A unit that has not shared it yet (an older revision): its peer address.
            2: {"ingress-address": "10.0.0.3"},
        },
    )
    website = testing.Network(
        "website",
        bind_addresses=[testing.BindAddress([testing.Address("192.168.0.1")])],
        ingress_addresses=["192.168.0.1"],
    )
    state = unit_state(port, relations=[peer, proxy])
    others = {network for network in state.networks if network.binding_name != "website"}
    state = dataclasses.replace(state, networks={*others, website})
    state = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)
    assert state.get_relation(peer.id).local_unit_data[WEBSITE_ADDRESS_KEY] == "192.168.0.1"
    assert [server[1] for server in services(state, proxy)[0]["servers"]] == [
        "192.168.0.1",
        "192.168.0.2",
        "10.0.0.3",
    ]
    assert state.get_relation(proxy.id).local_unit_data["hostname"] == "192.168.0.1"


def test_every_haproxy_unit_is_named_and_clients_get_the_lowest(ctx, port):
    tls = testing.Relation("cert-provider", remote_app_name="self-signed-certificates")
    proxy = testing.Relation(
        "website",
        remote_app_name="haproxy",
        remote_units_data={
            10: {"ingress-address": "10.9.9.10"},
            2: {"ingress-address": "10.9.9.2"},
            9: {"ingress-address": "10.9.9.9"},
        },
    )
    registry = registry_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), tls, proxy, registry])
    state = ctx.run(ctx.on.relation_changed(proxy, remote_unit=10), state)
    sans = json.loads(state.get_relation(tls.id).local_unit_data["sans"])
    assert {"10.9.9.2", "10.9.9.9", "10.9.9.10"} <= set(sans)
    # haproxy/2, not haproxy/10 (which sorts first as text).
    assert decoded(state.get_relation(registry.id).local_unit_data)["registry_netloc"] == (
        f"10.9.9.2:{port}"
    )


# --- cert-provider ---------------------------------------------------------


def test_legacy_request_and_certificate(ctx, machine, port):
    legacy = testing.Relation("cert-provider", remote_app_name="easyrsa")
    registry = registry_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), legacy, registry])
    state = ctx.run(ctx.on.relation_joined(legacy, remote_unit=0), state)
    request = state.get_relation(legacy.id).local_unit_data
    assert request["common_name"] == "127.0.0.1"
    assert "127.0.0.1" in json.loads(request["sans"])
    assert request["certificate_name"] == request["unit_name"] == "docker-registry_0"
    assert state.unit_status == testing.WaitingStatus(
        "Waiting for a certificate from cert-provider"
    )

    answer = easyrsa_answer(request, CA)
    answered = tls_answered(state.get_relation(legacy.id), remote_unit_data=answer)
    state = with_relation(state, answered)
    state = ctx.run(ctx.on.relation_changed(answered, remote_unit=0), state)
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (https).")
    data = decoded(state.get_relation(registry.id).local_unit_data)
    assert data["tls_ca"] == CA.cert_pem.decode()
    assert data["registry_url"].startswith("https://")
    assert (machine.root / "etc/docker/registry/registry.key").stat().st_mode & 0o077 == 0

    state = ctx.run(ctx.on.relation_broken(state.get_relation(answered.id)), state)
    data = decoded(state.get_relation(registry.id).local_unit_data)
    assert data["tls_ca"] is None
    assert data["registry_url"] == f"http://127.0.0.1:{port}"
    assert state.unit_status == testing.ActiveStatus(
        f"Ready at 127.0.0.1:{port} (http; containerd nodes need TLS)."
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            lambda good: {
                **good,
                "docker-registry_0.server.key": pki.issue(CA, "x").key_pem.decode(),
            },
            "cert-provider sent an unusable certificate: key: does not match the certificate",
        ),
        (
            lambda good: {**good, "docker-registry_0.server.cert": "garbage"},
            "cert-provider sent an unusable certificate: certificate: not a PEM certificate",
        ),
    ],
    ids=["mismatched-key", "garbage"],
)
def test_bad_legacy_certificate_blocks_and_keeps_serving(ctx, machine, port, answer, message):
    request = {
        "common_name": "127.0.0.1",
        "sans": '["127.0.0.1"]',
        "unit_name": "docker-registry_0",
    }
    state = ctx.run(ctx.on.install(), unit_state(port))
    config_before = (machine.root / "etc/docker/registry/config.yml").read_text()
    bad = testing.Relation(
        "cert-provider",
        remote_app_name="easyrsa",
        remote_units_data={0: answer(easyrsa_answer(request, CA))},
    )
    state = with_relation(state, bad)
    state = ctx.run(ctx.on.relation_changed(bad, remote_unit=0), state)
    assert state.unit_status == testing.BlockedStatus(message)
    assert (machine.root / "etc/docker/registry/config.yml").read_text() == config_before
    assert machine.launches["docker-registry"] == 1
    assert machine.running("docker-registry")


def test_current_provider_signs_our_csr(ctx, port):
    tls = testing.Relation("cert-provider", remote_app_name="self-signed-certificates")
    registry = registry_relation()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), tls, registry])
    state = ctx.run(ctx.on.relation_created(tls), state)
    state = ctx.run(ctx.on.relation_joined(state.get_relation(tls.id), remote_unit=0), state)
    ours = state.get_relation(tls.id).local_unit_data
    assert "certificate_signing_requests" in ours
    assert ours["common_name"] == "127.0.0.1"  # the legacy request travels too

    answer = current_provider_answer(ours, CA)
    answered = tls_answered(state.get_relation(tls.id), remote_app_data=answer)
    state = with_relation(state, answered)
    state = ctx.run(ctx.on.relation_changed(answered, remote_unit=0), state)
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (https).")
    data = decoded(state.get_relation(registry.id).local_unit_data)
    assert data["tls_ca"].strip() == CA.cert_pem.decode().strip()


def test_garbage_from_a_current_provider_does_not_raise(ctx, port):
    tls = testing.Relation(
        "cert-provider",
        remote_app_name="vault",
        remote_app_data={"certificates": "{not json"},
        remote_units_data={0: {"junk": "]["}},
    )
    state = unit_state(port, relations=[testing.PeerRelation("peer"), tls])
    state = ctx.run(ctx.on.relation_changed(tls, remote_unit=0), state)
    assert state.unit_status == testing.BlockedStatus(
        "cert-provider sent data that does not parse:"
        " its certificates are not the interface's JSON"
    )


def test_config_blobs_win_over_the_relation(ctx, port):
    config = tls_config(CA, "127.0.0.1")
    request = {
        "common_name": "127.0.0.1",
        "sans": '["127.0.0.1"]',
        "unit_name": "docker-registry_0",
    }
    other_ca = pki.make_ca("other")
    tls = testing.Relation(
        "cert-provider",
        remote_app_name="easyrsa",
        remote_units_data={0: easyrsa_answer(request, other_ca)},
    )
    registry = registry_relation()
    state = unit_state(
        port, config=config, relations=[testing.PeerRelation("peer"), tls, registry]
    )
    state = ctx.run(ctx.on.relation_changed(tls, remote_unit=0), state)
    assert (
        decoded(state.get_relation(registry.id).local_unit_data)["tls_ca"] == CA.cert_pem.decode()
    )


def test_the_certificate_names_the_proxy_once_it_joins(ctx, port):
    tls = testing.Relation("cert-provider", remote_app_name="self-signed-certificates")
    proxy = haproxy_relation("10.9.9.9")
    state = unit_state(port, relations=[testing.PeerRelation("peer"), tls])
    state = ctx.run(ctx.on.relation_created(tls), state)
    csr_before = state.get_relation(tls.id).local_unit_data["certificate_signing_requests"]
    state = ctx.run(ctx.on.relation_changed(proxy, remote_unit=0), with_relation(state, proxy))
    ours = state.get_relation(tls.id).local_unit_data
    assert "10.9.9.9" in json.loads(ours["sans"])
    assert ours["certificate_signing_requests"] != csr_before
