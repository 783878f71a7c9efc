"""Every field a remote charm can write, fuzzed, on a unit whose registry is serving.

Endpoints: cert-provider (legacy unit databag and current application
databag), website, docker-registry, peer (unit addresses; the leader's
secret id), nrpe-external-master (the Nagios names; the service files keep
their shape). Asserted: no hook error on the relation's event nor on the
update-status that follows; a Blocked or Waiting status names the
relation; when blocked nothing is written and nothing restarts; the
registry keeps running.
"""

from __future__ import annotations

import dataclasses
import json
import re

from hypothesis import given
from hypothesis import strategies as st
from ops import testing

from fuzz.budget import COUNTS, budget
from fuzz.strategies import CA, GOOD_CERT, OTHER_CERT, hostile_text, hosts
from support.files import snapshot

NAME = "docker-registry_0"
GARBAGE = "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----"
pems = st.one_of(
    st.sampled_from(
        [
            CA.cert_pem.decode(),
            GOOD_CERT.cert_pem.decode(),
            GOOD_CERT.key_pem.decode(),
            OTHER_CERT.cert_pem.decode(),
            OTHER_CERT.key_pem.decode(),
            GARBAGE,
            "",
        ]
    ),
    hostile_text,
)
addresses = st.one_of(hosts, hostile_text)
extra = st.dictionaries(hostile_text.filter(bool), hostile_text, max_size=2)


def databag(fields: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """Some of `fields`, plus keys nobody asked for."""
    return st.builds(
        lambda known, unknown: {**unknown, **known},
        st.fixed_dictionaries({}, optional=fields),
        extra,
    )


legacy = databag(
    {"ca": pems, "chain": pems, f"{NAME}.server.cert": pems, f"{NAME}.server.key": pems}
)
provider_certificate = st.fixed_dictionaries(
    {},
    optional={
        "certificate": pems,
        "certificate_signing_request": pems,
        "ca": pems,
        "chain": st.one_of(st.lists(pems, max_size=2), pems),
        "revoked": st.one_of(st.booleans(), hostile_text),
    },
)
current = st.one_of(
    st.lists(provider_certificate, max_size=2).map(lambda c: {"certificates": json.dumps(c)}),
    databag({"certificates": hostile_text, "request_errors": hostile_text}),
)
website = databag(
    {"private-address": addresses, "ingress-address": addresses, "hostname": addresses}
)
peer_unit = databag({"private-address": addresses, "ingress-address": addresses})
nrpe = databag({"nagios_hostname": addresses, "nagios_host_context": addresses})
peer_app = databag({"http-secret-id": st.one_of(hostile_text, st.just("secret:" + "a" * 20))})

remote = st.one_of(
    st.tuples(st.just("cert-provider (legacy)"), legacy),
    st.tuples(st.just("cert-provider (current)"), current),
    st.tuples(st.just("website"), website),
    st.tuples(st.just("docker-registry"), extra),
    st.tuples(st.just("peer (unit)"), peer_unit),
    st.tuples(st.just("peer (leader's app data)"), peer_app),
    st.tuples(st.just("nrpe-external-master"), nrpe),
)


def relation_for(kind: str, data: dict[str, str]) -> testing.RelationBase:
    if kind == "cert-provider (legacy)":
        return testing.Relation(
            "cert-provider", remote_app_name="easyrsa", remote_units_data={0: data}
        )
    if kind == "cert-provider (current)":
        return testing.Relation("cert-provider", remote_app_name="vault", remote_app_data=data)
    if kind == "website":
        return testing.Relation("website", remote_app_name="haproxy", remote_units_data={0: data})
    if kind == "docker-registry":
        return testing.Relation(
            "docker-registry", remote_app_name="containerd", remote_units_data={0: data}
        )
    if kind == "nrpe-external-master":
        return testing.SubordinateRelation(kind, remote_app_name="nrpe", remote_unit_data=data)
    if kind == "peer (unit)":
        return testing.PeerRelation("peer", peers_data={1: data})
    return testing.PeerRelation("peer", local_app_data=data, peers_data={1: {}})


@budget(300)
@given(remote)
def test_remote_data(unit, example):
    kind, data = example
    family = COUNTS[f"relation data: {kind}"]
    machine = unit.machine
    relation = relation_for(kind, data)
    others = {r for r in unit.state.relations if r.endpoint != relation.endpoint}
    state = dataclasses.replace(
        unit.state,
        relations={*others, relation},
        leader=kind != "peer (leader's app data)",
    )
    export = machine.root / "var/lib/nagios/export"
    for folder in (export, machine.root / "etc/nagios/nrpe.d"):  # as the nrpe unit makes them
        folder.mkdir(parents=True, exist_ok=True)
    before, launches = snapshot(machine.root), sum(machine.launches.values())
    remote_unit = 1 if isinstance(relation, testing.PeerRelation) else 0
    state = unit.ctx.run(unit.ctx.on.relation_changed(relation, remote_unit=remote_unit), state)
    state = unit.ctx.run(unit.ctx.on.update_status(), state)
    status = state.unit_status
    endpoint = relation.endpoint
    if status.name == "active":
        family["served"] += 1
    else:
        family[status.name] += 1
        assert "Registry is not answering" not in status.message, data
        assert endpoint in status.message or "http secret" in status.message, status
    if status.name == "blocked":
        assert snapshot(machine.root) == before
        assert sum(machine.launches.values()) == launches
    assert machine.running("docker-registry")
    for service in export.iterdir():
        host_name = re.search(r"^    host_name +(.*)$", service.read_text(), re.M)
        assert host_name, service.read_text()
        assert len(host_name[1].split()) == 1, host_name[1]
        assert service.read_text().count("\n") == 11, service.read_text()
