"""Seed 000: the registry reachable under an external domain name, on :443.

The guide: a domain name, a valid certificate for it, the registry served
under that name; nodes pull `<registry-domain-name>/automation/qaimages:helloworld`.
Here: `http-host=https://registry.example.test` (no port: 443) with a
certificate naming only that domain, the registry on 443 of a loopback
address of its own. The unit cannot resolve the name (split DNS): push and
images still work, because the actions dial loopback and verify TLS against
the name. The node maps the name to that address in its own namespace, so
nothing here ever asks DNS for it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from ops import testing

from charm_context import b64, unit_state
from support import oci, pki
from support.containerd import Containerd
from support.node import client_config, cri_registry
from support.wait import free_port

pytestmark = pytest.mark.e2e

DOMAIN = "registry.example.test"
ADDRESS = "127.12.0.1"
"""The registry's own loopback address: port 443 there is ours alone."""
IMAGE = "automation/qaimages:helloworld"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")


@pytest.fixture
def certificate() -> tuple[pki.CertificateAuthority, dict[str, str]]:
    """A certificate for the domain only (no IP, no localhost), and its tls-*-blob options."""
    ca = pki.make_ca("external-ca")
    cert, key = pki.issue(ca, DOMAIN, [DOMAIN])
    return ca, {
        "tls-cert-blob": b64(cert),
        "tls-key-blob": b64(key),
        "tls-ca-blob": b64(ca.cert_pem),
    }


@pytest.fixture
def unresolvable(monkeypatch) -> list[str]:
    """The unit's resolver knows nothing of the domain; every attempt is recorded."""
    attempts: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".test"):
            attempts.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def image_layout(tmp_path: Path) -> tuple[Path, str]:
    layout = tmp_path / "qaimages"
    digest = oci.build_image(layout, "helloworld", files={"hello": b"hello world\n"})
    return layout, digest


def test_clients_pull_by_the_name_on_443_and_push_works_unresolved(
    ctx, machine, certificate, unresolvable, tmp_path, monkeypatch
):
    _, tls = certificate
    machine.listen_host = ADDRESS
    config = {"http-host": f"https://{DOMAIN}", **tls}
    state = ctx.run(ctx.on.install(), unit_state(443, config=config))
    assert state.unit_status == testing.ActiveStatus(f"Ready at {DOMAIN} (https).")
    layout, digest = image_layout(tmp_path)

    # Juju sets proxy variables from the model's config: here, to a closed port.
    with monkeypatch.context() as hook:
        for name in PROXY_VARIABLES:
            hook.setenv(name, f"http://127.0.0.1:{free_port()}")
        push = {"image": f"oci:{layout}:helloworld", "tag": f"{DOMAIN}/{IMAGE}"}
        ctx.run(ctx.on.action("push", params=push), state)
        assert ctx.action_results["raw"] == f"pushed {DOMAIN}/{IMAGE}"
        assert ctx.action_results["images"]["1"]["digest"] == digest
        ctx.run(ctx.on.action("images", params={"digests": True}), state)
        assert ctx.action_results["images"] == f"{IMAGE} {digest}"
    assert unresolvable == [], "the unit never looked the name up"

    # The node: hosts.toml from client-config, the name mapped to the registry's address.
    hosts_dir = tmp_path / "certs.d"
    results = client_config(ctx, state, hosts_dir)
    assert f'server = "https://{DOMAIN}"' in results["hosts-toml"]
    node = Containerd(cri_registry=cri_registry(hosts_dir), etc_hosts={DOMAIN: ADDRESS})
    with node:
        node.cri.pull(f"{DOMAIN}/{IMAGE}")
        status = node.cri.status(f"{DOMAIN}/{IMAGE}")
        assert status is not None
        assert status.repo_digests == (f"{DOMAIN}/automation/qaimages@{digest}",)


def test_push_behind_an_ingress_on_another_port(ctx, machine, certificate, unresolvable, tmp_path):
    """Clients reach :443 (an ingress); the registry listens elsewhere: push dials that."""
    _, tls = certificate
    machine.listen_host = ADDRESS
    port = free_port(ADDRESS)
    state = ctx.run(
        ctx.on.install(), unit_state(port, config={"http-host": f"https://{DOMAIN}", **tls})
    )
    layout, digest = image_layout(tmp_path)
    ctx.run(ctx.on.action("push", params={"image": f"oci:{layout}"}), state)
    assert ctx.action_results["raw"] == f"pushed {DOMAIN}/qaimages:helloworld"
    assert ctx.action_results["images"]["1"]["digest"] == digest
    assert unresolvable == []
