"""Seed 001: the Charmed Kubernetes "Private Docker Registry" guide, its commands in order.

deploy; integrate easyrsa:client; basic auth admin/password; verify the login at
$IP:$PORT; integrate containerd; push image=k8s.gcr.io/defaultbackend-amd64:1.5
tag=$REGISTRY/defaultbackend-amd64:1.5 (and the rest of the list); nodes pull
$REGISTRY/...; then the proxied form: add-unit, remove easyrsa, integrate
haproxy:reverseproxy (the second unit, on its own address, is haproxy's backup).

k8s.gcr.io is emulated on a loopback address of its own, port 443, with a
certificate from a test CA: the unit reaches it through its site's DNS and
trust store (support.node.unit_site), the node never needs it.
"""

from __future__ import annotations

import base64
import dataclasses
import ssl
import urllib.error
import urllib.request

import pytest
from ops import testing
from test_relations_e2e import client_view, configure_node

from charm_context import unit_state, website_address, with_config, with_relation
from relations.peer import WEBSITE_ADDRESS_KEY
from support import haproxy_charm, oci, pki, skopeo
from support.haproxy import HAProxy, servers_by_backend
from support.node import client_config, public_registry, unit_site
from tls_providers import answered as tls_answered
from tls_providers import easyrsa_answer

pytestmark = pytest.mark.e2e

PUBLIC = "k8s.gcr.io"
PUBLIC_ADDRESS = "127.12.1.1"
PROXY_ADDRESS = "127.12.1.2"
IMAGES = ("defaultbackend-amd64:1.5", "pause:3.1", "addon-resizer:1.8.1")


def login(registry: str, ca_pem: str, user: str = "", password: str = "") -> int:
    """`docker login` as the guide verifies it: GET /v2/ with basic auth, never proxied."""
    request = urllib.request.Request(f"https://{registry}/v2/")
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context(cadata=ca_pem)),
    )
    try:
        with opener.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_guide_step_by_step(ctx, port, containerd, tmp_path, monkeypatch):
    site_ca = pki.make_ca("public-ca")
    layout = tmp_path / "images"
    digests = {
        image: oci.build_image(layout, image.replace(":", "-"), files={"i": image.encode()})
        for image in IMAGES
    }
    with public_registry(PUBLIC, PUBLIC_ADDRESS, site_ca) as public:
        for image in IMAGES:
            skopeo.copy(
                oci.layout_ref(layout, image.replace(":", "-")),
                f"docker://{public.netloc}/{image}",
                dest_tls_verify=False,
            )
        unit_site(monkeypatch, tmp_path / "site", {PUBLIC: PUBLIC_ADDRESS}, site_ca.cert_pem)
        _the_guide(ctx, port, containerd, tmp_path, digests)


def _the_guide(ctx, port, containerd, tmp_path, digests) -> None:
    # juju deploy docker-registry
    state = ctx.run(ctx.on.install(), unit_state(port))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")

    # juju integrate docker-registry easyrsa:client
    easyrsa_ca = pki.make_ca("easyrsa")
    easyrsa = testing.Relation("cert-provider", remote_app_name="easyrsa")
    state = ctx.run(ctx.on.relation_joined(easyrsa, remote_unit=0), with_relation(state, easyrsa))
    request = state.get_relation(easyrsa.id).local_unit_data
    answered = tls_answered(
        state.get_relation(easyrsa.id), remote_unit_data=easyrsa_answer(request, easyrsa_ca)
    )
    state = ctx.run(
        ctx.on.relation_changed(answered, remote_unit=0), with_relation(state, answered)
    )

    # juju config docker-registry auth-basic-user='admin' auth-basic-password='password'
    state = ctx.run(
        ctx.on.config_changed(),
        with_config(state, auth_basic_user="admin", auth_basic_password="password"),
    )
    registry = f"127.0.0.1:{port}"
    assert state.unit_status == testing.ActiveStatus(f"Ready at {registry} (https).")

    # Verify basic authentication is working (docker login -u admin -p password $REGISTRY)
    ca_pem = easyrsa_ca.cert_pem.decode()
    assert login(registry, ca_pem, "admin", "password") == 200
    assert login(registry, ca_pem) == 401

    # juju integrate docker-registry containerd
    related = testing.Relation("docker-registry", remote_app_name="containerd")
    state = ctx.run(ctx.on.relation_joined(related, remote_unit=0), with_relation(state, related))

    # juju run docker-registry/0 push image=k8s.gcr.io/defaultbackend-amd64:1.5
    #   tag=$REGISTRY/defaultbackend-amd64:1.5
    params = {"image": f"{PUBLIC}/{IMAGES[0]}", "tag": f"{registry}/{IMAGES[0]}"}
    ctx.run(ctx.on.action("push", params=params), state)
    assert ctx.action_results["outcome"] == "success"
    assert ctx.action_results["raw"] == f"pushed {registry}/{IMAGES[0]}"
    # "The above procedure should be repeated for all required images": a list.
    images_txt = tmp_path / "container-images.txt"
    images_txt.write_text(
        "# Charmed Kubernetes images\n" + "".join(f"{PUBLIC}/{i}\n" for i in IMAGES[1:])
    )
    ctx.run(ctx.on.action("push", params={"image": f"@{images_txt}"}), state)
    assert ctx.action_results["raw"] == "pushed " + ", ".join(
        f"{registry}/{image}" for image in IMAGES[1:]
    )

    # juju config kubernetes-control-plane image-registry=$REGISTRY: nodes pull from it.
    # The node's hosts.toml, CA and login as the containerd charm makes them from the relation.
    hosts_dir, user = configure_node(client_view(state, related), tmp_path / "node")
    for image in IMAGES:
        ref = f"{registry}/{image}"
        assert containerd.pull(ref, hosts_dir=hosts_dir, user=user) == digests[image]

    # Proxied registry: juju deploy haproxy; juju add-unit docker-registry;
    # juju remove-relation docker-registry easyrsa:client;
    # juju integrate docker-registry haproxy:reverseproxy
    peer = state.get_relations("peer")[0]
    address = website_address(1)
    second = dataclasses.replace(
        peer, peers_data={1: {"ingress-address": address, WEBSITE_ADDRESS_KEY: address}}
    )
    state = ctx.run(ctx.on.relation_joined(second, remote_unit=1), with_relation(state, second))
    state = ctx.run(ctx.on.relation_broken(state.get_relation(easyrsa.id)), state)
    state = dataclasses.replace(
        state, relations={r for r in state.relations if r.id != easyrsa.id}
    )
    website = testing.Relation(
        "website",
        remote_app_name="haproxy",
        remote_units_data={
            0: {"ingress-address": PROXY_ADDRESS, "private-address": PROXY_ADDRESS}
        },
    )
    state = ctx.run(ctx.on.relation_joined(website, remote_unit=0), with_relation(state, website))
    proxied = f"{PROXY_ADDRESS}:{port}"
    assert state.unit_status == testing.ActiveStatus(
        f"Ready at {proxied} (http, proxied; containerd nodes need TLS)."
    )
    databag = state.get_relation(website.id).local_unit_data
    # The follower publishes nothing: haproxy lists each unit once, from the leader's stanza.
    services = haproxy_charm.services({"docker-registry/0": databag, "docker-registry/1": {}})
    assert services is not None
    (service,) = [s for s in services if s.servers]
    assert [(name, address) for name, address, _, _ in service.servers] == [
        ("docker-registry-0", "127.0.0.1"),
        ("docker-registry-1", website_address(1)),
    ]
    cfg = haproxy_charm.haproxy_cfg(
        services, bind_host=PROXY_ADDRESS, stats_socket=str(tmp_path / "stats.sock")
    )
    with HAProxy(cfg, wait_ports=[port], host=PROXY_ADDRESS):
        backends = servers_by_backend(tmp_path / "stats.sock")
        assert [(s["svname"], s["bck"]) for servers in backends.values() for s in servers] == [
            ("docker-registry-0", "0"),
            ("docker-registry-1", "1"),
        ], "one primary, one backup"
        # The push dials the unit's registry; the image is named after the proxy.
        params = {"image": f"{PUBLIC}/{IMAGES[0]}", "tag": f"{proxied}/proxied/{IMAGES[0]}"}
        ctx.run(ctx.on.action("push", params=params), state)
        assert ctx.action_results["raw"] == f"pushed {proxied}/proxied/{IMAGES[0]}"
        # A node configured from client-config pulls through haproxy.
        hosts_dir = tmp_path / "certs.d"
        client_config(ctx, state, hosts_dir)
        ref = f"{proxied}/proxied/{IMAGES[0]}"
        assert (
            containerd.pull(ref, hosts_dir=hosts_dir, user="admin:password") == digests[IMAGES[0]]
        )
