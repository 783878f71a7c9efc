"""The relations, end to end: peers in the field read our databags and pull for real.

The containerd charm's side is played by reading our `docker-registry` unit
databag as it does (JSON-decode each value) and writing what a node gets:
hosts.toml, the CA and credentials. haproxy's side is a real haproxy whose
config is built from our `website` databag the way the haproxy charms build
it (tests/support/haproxy_charm.py). The TLS providers are played by tests/tls_providers.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ops import testing

from charm_context import PROXY_ADDRESS, tls_config, unit_state, with_relation
from support import haproxy_charm, oci, pki, skopeo
from support.containerd import HostEndpoint, write_hosts_toml
from support.haproxy import HAProxy
from tls_providers import answered as tls_answered
from tls_providers import current_provider_answer, easyrsa_answer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, str]:
    layout = tmp_path_factory.mktemp("layout")
    digest = oci.build_image(layout, "v1", layers=[{"data/relations.txt": b"through relations\n"}])
    return layout, digest


def client_view(state: testing.State, relation: testing.Relation) -> dict:
    """Our docker-registry databag as the containerd charm reads it."""
    databag = state.get_relation(relation.id).local_unit_data
    keys = ("registry_netloc", "registry_url", "basic_user", "basic_password", "tls_ca")
    return {key: json.loads(databag[key]) for key in keys}


def configure_node(view: dict, tmp_path: Path) -> tuple[Path, str | None]:
    """What the containerd charm writes on a node: hosts.toml with the CA; credentials."""
    hosts_dir = tmp_path / "certs.d"
    ca = view["tls_ca"].encode() if view["tls_ca"] else None
    write_hosts_toml(
        hosts_dir,
        view["registry_netloc"],
        server_url=view["registry_url"],
        endpoints=[HostEndpoint(view["registry_url"], ca=ca)],
    )
    user = f"{view['basic_user']}:{view['basic_password']}" if view["basic_user"] else None
    return hosts_dir, user


def push(image, view: dict, repo: str, tmp_path: Path, admin: str | None) -> None:
    """Fill the registry as an operator would: the relation's address, the operator's login.

    The relation's own credential may only pull.
    """
    layout, _ = image
    kw: dict = {}
    if view["tls_ca"]:
        cert_dir = tmp_path / "push-certs"
        cert_dir.mkdir(exist_ok=True)
        (cert_dir / "ca.crt").write_text(view["tls_ca"])
        kw["dest_cert_dir"] = cert_dir
    else:
        kw["dest_tls_verify"] = False
    if admin:
        kw["dest_creds"] = admin
    skopeo.copy(f"oci:{layout}:v1", f"docker://{view['registry_netloc']}/{repo}", **kw)


def pull_as_a_node(containerd, image, state, relation, repo, tmp_path, admin=None) -> None:
    view = client_view(state, relation)
    push(image, view, repo, tmp_path, admin)
    hosts_dir, user = configure_node(view, tmp_path)
    ref = f"{view['registry_netloc']}/{repo}"
    assert containerd.pull(ref, hosts_dir=hosts_dir, user=user) == image[1]


@pytest.mark.parametrize(
    "config",
    [{}, {"auth-basic-user": "node", "auth-basic-password": "12345"}],
    ids=["plain", "basic-auth"],
)
def test_containerd_pulls_with_what_the_relation_says(
    ctx, port, containerd, image, tmp_path, config
):
    relation = testing.Relation("docker-registry", remote_app_name="containerd")
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    admin = "node:12345" if config else None
    if admin:
        assert client_view(state, relation)["basic_user"] == f"juju-containerd-{relation.id}"
    pull_as_a_node(containerd, image, state, relation, "rel/plain:v1", tmp_path, admin)


def test_containerd_pulls_over_tls_from_config(ctx, port, containerd, image, tmp_path):
    config = tls_config(pki.make_ca(), "127.0.0.1")
    relation = testing.Relation("docker-registry", remote_app_name="containerd")
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    assert client_view(state, relation)["registry_url"] == f"https://127.0.0.1:{port}"
    pull_as_a_node(containerd, image, state, relation, "rel/tls:v1", tmp_path)


def test_legacy_tls_provider(ctx, port, containerd, image, tmp_path):
    ca = pki.make_ca("easyrsa")
    tls = testing.Relation("cert-provider", remote_app_name="easyrsa")
    relation = testing.Relation("docker-registry", remote_app_name="containerd")
    state = unit_state(port, relations=[testing.PeerRelation("peer"), tls, relation])
    state = ctx.run(ctx.on.relation_joined(tls, remote_unit=0), state)
    request = state.get_relation(tls.id).local_unit_data
    answer = easyrsa_answer(request, ca)
    answered = tls_answered(state.get_relation(tls.id), remote_unit_data=answer)
    state = ctx.run(
        ctx.on.relation_changed(answered, remote_unit=0), with_relation(state, answered)
    )
    assert client_view(state, relation)["tls_ca"] == ca.cert_pem.decode()
    pull_as_a_node(containerd, image, state, relation, "rel/easyrsa:v1", tmp_path)


def test_current_tls_provider(ctx, port, containerd, image, tmp_path):
    ca = pki.make_ca("self-signed-certificates")
    tls = testing.Relation("cert-provider", remote_app_name="self-signed-certificates")
    relation = testing.Relation("docker-registry", remote_app_name="containerd")
    state = unit_state(port, relations=[testing.PeerRelation("peer"), tls, relation])
    state = ctx.run(ctx.on.relation_created(tls), state)
    ours = state.get_relation(tls.id).local_unit_data
    answer = current_provider_answer(ours, ca)
    answered = tls_answered(state.get_relation(tls.id), remote_app_data=answer)
    state = ctx.run(
        ctx.on.relation_changed(answered, remote_unit=0), with_relation(state, answered)
    )
    assert client_view(state, relation)["registry_url"].startswith("https://")
    pull_as_a_node(containerd, image, state, relation, "rel/current:v1", tmp_path)


@pytest.mark.parametrize("auth", [False, True], ids=["open", "relation-credential"])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls-passthrough"])
def test_containerd_pulls_through_haproxy(ctx, port, containerd, image, tmp_path, tls, auth):
    config = {}
    if tls:
        config = tls_config(pki.make_ca(), PROXY_ADDRESS, "127.0.0.1")
    if auth:
        config["auth-basic-password"] = "admin-pw"
    website = testing.Relation(
        "website",
        remote_app_name="haproxy",
        remote_units_data={
            0: {"ingress-address": PROXY_ADDRESS, "private-address": PROXY_ADDRESS}
        },
    )
    relation = testing.Relation("docker-registry", remote_app_name="containerd")
    state = unit_state(
        port, config=config, relations=[testing.PeerRelation("peer"), website, relation]
    )
    state = ctx.run(ctx.on.relation_joined(website, remote_unit=0), state)
    view = client_view(state, relation)
    assert view["registry_netloc"] == f"{PROXY_ADDRESS}:{port}"
    databag = state.get_relation(website.id).local_unit_data
    services = haproxy_charm.services({"docker-registry/0": databag})
    assert services is not None
    cfg = haproxy_charm.haproxy_cfg(
        services, bind_host=PROXY_ADDRESS, stats_socket=str(tmp_path / "stats.sock")
    )
    with HAProxy(cfg, wait_ports=[port], host=PROXY_ADDRESS) as proxy:
        admin = "admin:admin-pw" if auth else None
        pull_as_a_node(containerd, image, state, relation, "rel/proxied:v1", tmp_path, admin)
        assert f"to {PROXY_ADDRESS}:{port} (haproxy-{port}/" in proxy.log_tail()
