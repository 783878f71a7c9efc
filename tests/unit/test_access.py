"""Least privilege: each consumer's pull-only credential, enforced by the real haproxy front.

The charm runs on a LocalMachine, so the registry and haproxy are real
processes: every right asserted here is a real HTTP answer.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import stat
import urllib.error
import urllib.request

from ops import testing

from charm_context import charm_context, unit_state
from relations.docker_registry import secret_label
from relations.peer import SECRET_ID_KEY, SECRET_LABEL
from state.front import GENERATION_PATH
from support.wait import wait_for

ADMIN = {"auth-basic-password": "admin-pw"}
DIGEST = "sha256:" + "0" * 64
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(port: int, method: str, path: str, auth: tuple[str, str] | None = None):
    """(status, headers) of one request to the unit's registry port."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with NO_PROXY.open(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers


def generation(port: int) -> str:
    """The users' generation the front's current process answers."""
    with NO_PROXY.open(f"http://127.0.0.1:{port}{GENERATION_PATH}", timeout=10) as response:
        return response.read().decode()


def credential(state: testing.State, relation: testing.Relation) -> tuple[str, str]:
    """The credential a consumer reads from our unit databag (JSON-decoded)."""
    bag = state.get_relation(relation.id).local_unit_data
    return json.loads(bag["basic_user"]), json.loads(bag["basic_password"])


def containerd(name: str = "containerd") -> testing.Relation:
    return testing.Relation("docker-registry", remote_app_name=name)


def test_a_relation_credential_pulls_and_nothing_else(ctx, machine, port):
    relation = containerd()
    state = unit_state(port, config=ADMIN, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    pull = credential(state, relation)
    assert call(port, "GET", "/v2/", pull)[0] == 200
    assert call(port, "GET", "/v2/_catalog", pull)[0] == 200
    assert call(port, "HEAD", f"/v2/app/blobs/{DIGEST}", pull)[0] == 404  # allowed, absent
    for method, path in (
        ("POST", "/v2/app/blobs/uploads/"),
        ("POST", f"/v2/app/blobs/uploads/?mount={DIGEST}&from=other"),
        ("PATCH", "/v2/app/blobs/uploads/some-id"),
        ("PUT", "/v2/app/manifests/latest"),
        ("DELETE", f"/v2/app/manifests/{DIGEST}"),
    ):
        status, headers = call(port, method, path, pull)
        assert status == 403, (method, path)
        assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
    # The operator's admin may write (the registry itself answers).
    assert call(port, "POST", "/v2/app/blobs/uploads/", ("admin", "admin-pw"))[0] == 202
    for auth in (None, (pull[0], "wrong"), ("nobody", pull[1])):
        status, headers = call(port, "GET", "/v2/", auth)
        assert status == 401, auth
        assert headers["WWW-Authenticate"] == 'Basic realm="docker-registry"'
        assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
    # The registry port is haproxy's; the registry itself is on a socket.
    assert machine.running("haproxy")
    config = (machine.root / "etc/haproxy/haproxy.cfg").stat()
    assert stat.S_IMODE(config.st_mode) == 0o600


def test_each_relation_has_its_own_credential_kept_in_an_app_secret(ctx, port):
    first, second = containerd(), containerd("containerd-gpu")
    peer = testing.PeerRelation("peer")
    state = unit_state(port, config=ADMIN, relations=[peer, first, second])
    state = ctx.run(ctx.on.relation_joined(second, remote_unit=0), state)
    one, two = credential(state, first), credential(state, second)
    assert one != two
    assert two[0] == f"juju-containerd-gpu-{second.id}"
    shared = state.get_relation(peer.id).local_app_data
    secret = state.get_secret(label=secret_label(first.id))
    assert shared[secret_label(first.id)] == secret.id
    assert secret.owner == "app"
    assert secret.tracked_content == {"username": one[0], "password": one[1]}
    assert one[1] not in shared.values()
    assert call(port, "GET", "/v2/", one)[0] == call(port, "GET", "/v2/", two)[0] == 200


def test_relation_broken_revokes_the_credential_in_that_hook(ctx, machine, port):
    relation, other = containerd(), containerd("containerd-gpu")
    peer = testing.PeerRelation("peer")
    state = unit_state(port, config=ADMIN, relations=[peer, relation, other])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    pull, kept = credential(state, relation), credential(state, other)
    assert call(port, "GET", "/v2/", pull)[0] == 200
    reloads = machine.reloads["haproxy"]
    state = ctx.run(ctx.on.relation_broken(state.get_relation(relation.id)), state)
    assert call(port, "GET", "/v2/", pull)[0] == 401
    assert call(port, "GET", "/v2/", kept)[0] == 200
    assert machine.reloads["haproxy"] == reloads + 1, "a reload, not a restart"
    assert machine.launches["haproxy"] == 1
    assert secret_label(relation.id) not in state.get_relation(peer.id).local_app_data
    assert not [s for s in state.secrets if s.label == secret_label(relation.id)]


def test_a_generated_credential_is_checked_by_its_digest_and_a_chosen_one_by_bcrypt(
    ctx, machine, port
):
    """A relation's credential (192 random bits) costs no crypt per request: with its
    bcrypt line in the userlist broken it still gets in, and only with its password."""
    relation = containerd()
    state = unit_state(port, config=ADMIN, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    pull = credential(state, relation)
    config = machine.root / "etc/haproxy/haproxy.cfg"
    text = config.read_text()
    for name in (pull[0], "admin"):
        text, broken = re.subn(
            rf"(    user '{re.escape(name)}' password )'[^']*'", r"\1'$2b$05$x'", text
        )
        assert broken == 1, name
    text, marked = re.subn(
        r"(string )'[0-9a-f]+'( if \{ path '" + GENERATION_PATH + ")", r"\1'edited'\2", text
    )
    assert marked == 1
    config.write_text(text)
    machine.reload("haproxy")
    wait_for(lambda: generation(port) == "edited", timeout=15, what="haproxy reloaded")
    assert call(port, "GET", "/v2/", pull)[0] == 200
    assert call(port, "GET", "/v2/", (pull[0], pull[1][:-1]))[0] == 401
    assert call(port, "GET", "/v2/", ("admin", "admin-pw"))[0] == 401, "bcrypt only"


def test_the_last_relation_gone_the_admin_alone_is_served_directly(ctx, machine, port):
    relation = containerd()
    state = unit_state(port, config=ADMIN, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    pull = credential(state, relation)
    state = ctx.run(ctx.on.relation_broken(state.get_relation(relation.id)), state)
    assert not machine.running("haproxy")
    assert call(port, "GET", "/v2/", pull)[0] == 401
    assert call(port, "GET", "/v2/", ("admin", "admin-pw"))[0] == 200


def test_a_follower_publishes_the_leaders_credential(machine, port):
    relation = containerd()
    leader = charm_context(machine)
    state = unit_state(port, config=ADMIN, relations=[testing.PeerRelation("peer"), relation])
    state = leader.run(leader.on.relation_joined(relation, remote_unit=0), state)
    published = credential(state, relation)
    machine.close()
    # Unit 1 sees what the leader shared: the http secret and the credential's secret.
    shared = dict(state.get_relation(state.get_relations("peer")[0].id).local_app_data)
    secrets = [dataclasses.replace(s, owner=None) for s in state.secrets]
    peer = testing.PeerRelation(
        "peer", local_app_data=shared, peers_data={0: {"ingress-address": "127.0.0.1"}}
    )
    follower = charm_context(machine, unit_id=1)
    assert SECRET_ID_KEY in shared
    assert any(s.label == SECRET_LABEL for s in secrets)
    without = unit_state(
        port,
        leader=False,
        config=ADMIN,
        relations=[
            dataclasses.replace(peer, local_app_data={SECRET_ID_KEY: shared[SECRET_ID_KEY]}),
            relation,
        ],
        secrets=secrets,
    )
    without = follower.run(follower.on.relation_joined(relation, remote_unit=0), without)
    bag = without.get_relation(relation.id).local_unit_data
    assert "registry_netloc" in bag
    assert "basic_user" not in bag, "not yet known: left out"
    state = unit_state(
        port, leader=False, config=ADMIN, relations=[peer, relation], secrets=secrets
    )
    state = follower.run(follower.on.relation_changed(relation, remote_unit=0), state)
    assert credential(state, relation) == published
    assert call(port, "GET", "/v2/", published)[0] == 200


def test_the_admin_alone_keeps_the_registry_serving_directly(ctx, machine, port):
    """No relation, no other user: nothing to tell apart, no extra hop (as before)."""
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=ADMIN))
    assert not machine.running("haproxy")
    assert (machine.root / "etc/docker/registry/htpasswd").is_file()
    assert call(port, "GET", "/v2/", ("admin", "admin-pw"))[0] == 200
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")


def test_actions_keep_full_rights_with_the_charms_own_credential(ctx, machine, port):
    relation = containerd()
    state = unit_state(port, config=ADMIN, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    own = machine.root / "etc/docker/registry/charm-password"
    assert stat.S_IMODE(own.stat().st_mode) == 0o600
    password = own.read_text().strip()
    assert password not in json.dumps([dict(r.local_unit_data) for r in state.relations])
    assert call(port, "DELETE", f"/v2/app/manifests/{DIGEST}", ("juju-charm", password))[0] in (
        404,
        405,
    ), "past the front: the registry answers"
    ctx.run(ctx.on.action("images"), state)
    assert ctx.action_results is not None


def test_a_bad_users_secret_blocks_naming_the_user_and_keeps_the_last_good_set(ctx, port):
    good = testing.Secret({"users": "ci:\n  password: ci-pw\n  role: push\n  prefix: team-a/\n"})
    state = unit_state(port, config={**ADMIN, "auth-users": good.id}, secrets=[good])
    state = ctx.run(ctx.on.config_changed(), state)
    assert state.unit_status.name == "active"
    assert call(port, "POST", "/v2/team-a/app/blobs/uploads/", ("ci", "ci-pw"))[0] == 202
    assert call(port, "POST", "/v2/team-b/app/blobs/uploads/", ("ci", "ci-pw"))[0] == 403
    content = {"users": "ci:\n  password: other-pw\n  role: root\n"}
    bad = dataclasses.replace(good, tracked_content=content, latest_content=content)
    state = ctx.run(ctx.on.secret_changed(bad), dataclasses.replace(state, secrets=[bad]))
    assert state.unit_status == testing.BlockedStatus(
        "Invalid charm config: auth-users: user 'ci': role must be one of pull, push, admin"
    )
    assert call(port, "POST", "/v2/team-a/app/blobs/uploads/", ("ci", "ci-pw"))[0] == 202


def test_a_refreshed_unit_moves_each_relation_to_its_credential_and_the_old_one_keeps_pulling(
    machine, port
):
    """Before: every node held the admin. A follower that cannot read the new one yet keeps it."""
    old = {"basic_user": '"admin"', "basic_password": '"admin-pw"'}
    relation = testing.Relation("docker-registry", remote_app_name="containerd",
                                local_unit_data=old)  # fmt: skip
    peer = testing.PeerRelation("peer", peers_data={0: {"ingress-address": "127.0.0.1"}})
    follower = charm_context(machine, unit_id=1)
    http = testing.Secret({"http-secret": "shared"}, label=SECRET_LABEL)
    state = unit_state(
        port,
        leader=False,
        config=ADMIN,
        relations=[dataclasses.replace(peer, local_app_data={SECRET_ID_KEY: http.id}), relation],
        secrets=[http],
    )
    state = follower.run(follower.on.upgrade_charm(), state)
    bag = state.get_relation(relation.id).local_unit_data
    assert (bag["basic_user"], bag["basic_password"]) == (old["basic_user"], old["basic_password"])
    assert call(port, "GET", "/v2/", ("admin", "admin-pw"))[0] == 200
    machine.close()
    leader = charm_context(machine, unit_id=1)  # elected after the refresh
    owned = [dataclasses.replace(http, owner="app")]
    state = leader.run(
        leader.on.upgrade_charm(), dataclasses.replace(state, leader=True, secrets=owned)
    )
    new = credential(state, relation)
    assert new[0] == f"juju-containerd-{relation.id}"
    assert call(port, "GET", "/v2/", new)[0] == 200
    assert call(port, "GET", "/v2/", ("admin", "admin-pw"))[0] == 200, "nodes not yet restarted"
