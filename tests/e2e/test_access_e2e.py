"""Least privilege with real clients: skopeo against the charm's haproxy front and registry.

The charm runs on a LocalMachine (Scenario), so haproxy and the registry are
the real processes; skopeo pulls and pushes as an operator's or a node's
client would.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from ops import testing

from charm_context import unit_state, with_config, with_relation
from support import oci, pki, skopeo
from support._proc import CommandError
from tls_providers import answered as tls_answered
from tls_providers import current_provider_answer

pytestmark = pytest.mark.e2e

ADMIN = ("admin", "admin-pw")
CONFIG = {"auth-basic-password": ADMIN[1]}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, str]:
    layout = tmp_path_factory.mktemp("layout")
    digest = oci.build_image(layout, "v1", layers=[{"data/access.txt": b"least privilege\n"}])
    return layout, digest


def creds(user: tuple[str, str] | None) -> str | None:
    return f"{user[0]}:{user[1]}" if user else None


def push(image, port: int, repo: str, user: tuple[str, str] | None) -> None:
    layout, _ = image
    skopeo.copy(
        oci.layout_ref(layout, "v1"),
        f"docker://127.0.0.1:{port}/{repo}",
        dest_creds=creds(user),
        dest_tls_verify=False,
    )


def pull_digest(port: int, repo: str, user: tuple[str, str] | None) -> str:
    return skopeo.inspect_digest(
        f"docker://127.0.0.1:{port}/{repo}", creds=creds(user), tls_verify=False
    )


def delete(port: int, repo: str, digest: str, user: tuple[str, str]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/{repo}/manifests/{digest}", method="DELETE"
    )
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with NO_PROXY.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        with e:
            return e.code


def relation_credential(state: testing.State, relation: testing.Relation) -> tuple[str, str]:
    bag = state.get_relation(relation.id).local_unit_data
    return json.loads(bag["basic_user"]), json.loads(bag["basic_password"])


def test_a_consumer_credential_pulls_only_and_dies_with_its_relation(ctx, port, image):
    relation = testing.Relation("docker-registry", remote_app_name="containerd")
    config = {**CONFIG, "storage-delete": True}
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    node = relation_credential(state, relation)
    push(image, port, "team/app:v1", ADMIN)
    _, digest = image
    assert pull_digest(port, "team/app:v1", node) == digest
    with pytest.raises(CommandError, match=r"403|denied"):
        push(image, port, "team/app:v2", node)
    with pytest.raises(CommandError, match=r"403|denied"):
        push(image, port, "other/app:v1", node)
    assert delete(port, "team/app", digest, node) == 403
    with pytest.raises(CommandError, match=r"401|unauthorized"):
        pull_digest(port, "team/app:v1", (node[0], "wrong"))
    state = ctx.run(ctx.on.relation_broken(state.get_relation(relation.id)), state)
    with pytest.raises(CommandError, match=r"401|unauthorized"):
        pull_digest(port, "team/app:v1", node)
    # The operator's admin may still do everything, delete included.
    assert delete(port, "team/app", digest, ADMIN) == 202


def users_secret(users: dict) -> testing.Secret:
    return testing.Secret({"users": yaml.safe_dump(users)})


def test_a_pipeline_user_pushes_only_under_its_prefix(ctx, port, image):
    secret = users_secret(
        {
            "ci-team-a": {"password": "ci-pw", "role": "push", "prefix": "team-a/"},
            "reader": {"password": "reader-pw", "role": "pull"},
        }
    )
    state = unit_state(port, config={**CONFIG, "auth-users": secret.id}, secrets=[secret])
    state = ctx.run(ctx.on.config_changed(), state)
    assert state.unit_status.name == "active", state.unit_status
    ci, reader = ("ci-team-a", "ci-pw"), ("reader", "reader-pw")
    push(image, port, "team-a/app:v1", ci)
    with pytest.raises(CommandError, match=r"403|denied"):
        push(image, port, "team-b/app:v1", ci)
    with pytest.raises(CommandError, match=r"403|denied"):
        push(image, port, "team-a/app:v2", reader)
    _, digest = image
    assert pull_digest(port, "team-a/app:v1", reader) == digest
    assert delete(port, "team-a/app", digest, ci) == 403


def test_anonymous_pulls_only_with_the_option(ctx, port, image):
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=CONFIG))
    push(image, port, "public/app:v1", ADMIN)
    with pytest.raises(CommandError, match=r"401|unauthorized"):
        pull_digest(port, "public/app:v1", None)
    state = ctx.run(ctx.on.config_changed(), with_config(state, auth_anonymous_pull=True))
    _, digest = image
    assert pull_digest(port, "public/app:v1", None) == digest
    with pytest.raises(CommandError, match=r"401|unauthorized"):
        push(image, port, "public/app:v2", None)
    push(image, port, "public/app:v2", ADMIN)


def test_mutual_tls_from_a_provider_with_a_relation_credential(ctx, port, image, tmp_path):
    """TLS from cert-provider, client certificates required: the front checks both."""
    ca = pki.make_ca("provider-ca")
    tls = testing.Relation("cert-provider", remote_app_name="self-signed-certificates")
    relation = testing.Relation("docker-registry", remote_app_name="containerd")
    config = {**CONFIG, "tls-client-auth": "on"}
    state = unit_state(
        port, config=config, relations=[testing.PeerRelation("peer"), tls, relation]
    )
    state = ctx.run(ctx.on.relation_created(tls), state)
    answer = current_provider_answer(state.get_relation(tls.id).local_unit_data, ca)
    answered = tls_answered(state.get_relation(tls.id), remote_app_data=answer)
    state = ctx.run(
        ctx.on.relation_changed(answered, remote_unit=0), with_relation(state, answered)
    )
    assert state.unit_status.name == "active", state.unit_status
    node = relation_credential(state, relation)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(ca.cert_pem)
    cert, key = pki.issue(ca, "node-0", ["node-0"])
    (certs / "node.cert").write_bytes(cert)
    (certs / "node.key").write_bytes(key)
    layout, digest = image
    ref = f"docker://127.0.0.1:{port}/secure/app"
    skopeo.copy(oci.layout_ref(layout, "v1"), f"{ref}:v1", dest_creds=creds(ADMIN),
                dest_cert_dir=certs)  # fmt: skip
    assert skopeo.inspect_digest(f"{ref}:v1", creds=creds(node), cert_dir=certs) == digest
    with pytest.raises(CommandError, match=r"403|denied"):
        skopeo.copy(oci.layout_ref(layout, "v1"), f"{ref}:v2", dest_creds=creds(node),
                    dest_cert_dir=certs)  # fmt: skip
    # The actions pass with the charm's own client certificate and credential.
    ctx.run(ctx.on.action("images"), state)
    assert ctx.action_results is not None
    assert "secure/app" in json.dumps(ctx.action_results)
