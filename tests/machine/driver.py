"""Runs inside the machine tier's container: the shipped charm, driven by Scenario.

Started with the packed charm's own interpreter and import path (as its
`dispatch` sets them), so the code under test is the `.charm`'s. Reads one
JSON request a line on stdin and answers one JSON line on stdout:

    {"event": "config_changed", "config": {...}}   -> {"status": ..., "message": ...}
    {"action": "push", "params": {...}}            -> {... "results": ..., "failure": ...}
    {"subordinate": "nrpe-external-master", "joined": true, "remote": {...}}
                                 -> relates a subordinate (false: breaks and removes it)

The unit's Juju state (stored state, the peer relation, the leader's http
secret) is kept in a file between requests, so it survives a reboot of the
container as a unit's does.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import sys
import traceback
from pathlib import Path

from ops import testing

from charm import DockerRegistryCharm

STATE_FILE = Path("/var/lib/machine-driver/state.pickle")
ENDPOINTS = ("docker-registry", "website", "cert-provider", "peer")


def initial_state() -> testing.State:
    """A leader unit whose only address is loopback (the container has no other network)."""
    address = testing.BindAddress([testing.Address("127.0.0.1")])
    networks = {
        testing.Network(
            endpoint,
            bind_addresses=[address],
            ingress_addresses=["127.0.0.1"],
            egress_subnets=["127.0.0.0/8"],
        )
        for endpoint in ENDPOINTS
    }
    empty = STATE_FILE.with_name("images-empty.tar")
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.touch()
    return testing.State(
        leader=True,
        networks=networks,
        relations=[testing.PeerRelation("peer")],
        resources={testing.Resource(name="images", path=empty)},
    )


def load_state() -> testing.State:
    if STATE_FILE.exists():
        return pickle.loads(STATE_FILE.read_bytes())
    return initial_state()


def save_state(state: testing.State) -> None:
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_bytes(pickle.dumps(state))


def handle(
    ctx: testing.Context, state: testing.State, request: dict
) -> tuple[testing.State, dict]:
    """Run one event or action; the new state and what to tell the test."""
    if "config" in request:
        state = dataclasses.replace(state, config={**state.config, **request["config"]})
    if "leader" in request:
        state = dataclasses.replace(state, leader=request["leader"])
    if "peer_app_data" in request:  # keys another leader wrote
        peer = next(r for r in state.relations if isinstance(r, testing.PeerRelation))
        app_data = {**peer.local_app_data, **request["peer_app_data"]}
        peer = dataclasses.replace(peer, local_app_data=app_data)
        others = [r for r in state.relations if r.id != peer.id]
        state = dataclasses.replace(state, relations=[*others, peer])
    if "images_resource" in request:  # juju attach-resource
        resource = testing.Resource(name="images", path=Path(request["images_resource"]))
        state = dataclasses.replace(state, resources={resource})
    if "storage" in request:
        storage = testing.Storage("data")
        state = dataclasses.replace(state, storages=[storage])
        event = getattr(ctx.on, request["storage"])(storage)
        state = ctx.run(event, state)
        return state, {}
    answer: dict = {}
    if "subordinate" in request:
        return relate_subordinate(ctx, state, request), answer
    if "relate" in request:  # a subordinate on this machine joins the endpoint
        relation = testing.Relation(request["relate"], remote_units_data={0: {}})
        state = dataclasses.replace(state, relations=[*state.relations, relation])
        state = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
        answer["data"] = dict(state.get_relation(relation.id).local_unit_data)
        return state, answer
    if "unrelate" in request:
        relation = next(r for r in state.relations if r.endpoint == request["unrelate"])
        state = ctx.run(ctx.on.relation_broken(relation), state)
        remaining = [r for r in state.relations if r.id != relation.id]
        state = ctx.run(ctx.on.config_changed(), dataclasses.replace(state, relations=remaining))
        return state, answer
    if "action" in request:
        try:
            state = ctx.run(ctx.on.action(request["action"], params=request["params"]), state)
        except testing.ActionFailed as e:
            answer["failure"] = e.message
            if isinstance(e.state, testing.State):
                state = e.state
        answer["results"] = ctx.action_results
        answer["logs"] = ctx.action_logs
    else:
        state = ctx.run(getattr(ctx.on, request["event"])(), state)
    return state, answer


def relate_subordinate(ctx: testing.Context, state: testing.State, request: dict) -> testing.State:
    """Join a subordinate on `request["subordinate"]`, or break and remove it."""
    endpoint = request["subordinate"]
    if request["joined"]:
        relation = testing.SubordinateRelation(
            endpoint, remote_app_name="sub", remote_unit_data=request.get("remote", {})
        )
        state = dataclasses.replace(state, relations={*state.relations, relation})
        return ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    (relation,) = (r for r in state.relations if r.endpoint == endpoint)
    state = ctx.run(ctx.on.relation_broken(relation), state)
    return dataclasses.replace(
        state, relations={r for r in state.relations if r.id != relation.id}
    )


def main() -> None:
    charm_root = Path(sys.modules[DockerRegistryCharm.__module__].__file__ or "").parent.parent
    ctx = testing.Context(
        DockerRegistryCharm, charm_root=charm_root, app_name="docker-registry", unit_id=0
    )
    for line in sys.stdin:
        state = load_state()
        try:
            state, answer = handle(ctx, state, json.loads(line))
        except Exception:
            answer = {"error": traceback.format_exc()}
        else:
            save_state(state)
            answer.update(status=state.unit_status.name, message=state.unit_status.message)
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
