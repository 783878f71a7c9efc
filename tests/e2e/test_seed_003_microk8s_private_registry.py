"""Seed 003: MicroK8s and a private registry, in its three forms.

- Insecure: `docker push 10.141.241.175:32000/mynginx:registry` to a plain-HTTP
  registry; Docker's daemon.json `insecure-registries`; containerd's
  hosts.toml `server = "http://..."` (MicroK8s 1.23+) or a
  `registry.mirrors` entry with an http endpoint (1.22 and older).
- Secure, with a custom CA and credentials: hosts.toml with `ca`, and the
  containerd-template.toml `registry.configs."<registry>".auth` table.
- A mirror of registry.k8s.io: hosts.toml `[host."https://<mirror>/v2/<path>"]`
  with `override_path = true`.

The node is a containerd (CRI, as kubelet pulls) configured only from the
client-config action's output; registry.k8s.io is mapped, in the node's own
namespace, to a loopback address where nothing listens, so a pull that does
not come from the mirror fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charm_context import tls_config, unit_state
from support import oci, pki
from support.containerd import Containerd
from support.cri import CRIError
from support.node import CRI_REGISTRY, client_config, cri_registry

pytestmark = pytest.mark.e2e

USER, PASSWORD = "my-secret-user", "my-safe-password"
NOWHERE = "127.12.3.1"


@pytest.fixture
def mynginx(tmp_path) -> tuple[Path, str]:
    """What `docker build . -t $REGISTRY/mynginx:registry` made, as an OCI layout."""
    layout = tmp_path / "mynginx"
    return layout, oci.build_image(layout, "registry", files={"index.html": b"<h1>hi</h1>\n"})


def test_insecure_registry(ctx, port, mynginx, tmp_path):
    layout, digest = mynginx
    registry = f"127.0.0.1:{port}"
    state = ctx.run(ctx.on.install(), unit_state(port))
    ctx.run(
        ctx.on.action(
            "push", params={"image": f"oci:{layout}:registry", "tag": f"{registry}/mynginx"}
        ),
        state,
    )
    assert ctx.action_results["raw"] == f"pushed {registry}/mynginx:latest"
    ctx.run(
        ctx.on.action(
            "push",
            params={"image": f"oci:{layout}:registry", "tag": f"{registry}/mynginx:registry"},
        ),
        state,
    )
    hosts_dir = tmp_path / "certs.d"
    config = client_config(ctx, state, hosts_dir)
    assert json.loads(config["docker-daemon-json"]) == {"insecure-registries": [registry]}
    assert f'server = "http://{registry}"' in config["hosts-toml"]
    assert f'[host."http://{registry}"]' in config["hosts-toml"]
    image = f"{registry}/mynginx:registry"

    # MicroK8s 1.23 and newer: hosts.toml.
    with Containerd(cri_registry=cri_registry(hosts_dir)) as node:
        node.cri.pull(image)
        assert node.cri.repo_digest(image) == digest
    # MicroK8s 1.22 and older: containerd-template.toml's registry.mirrors.
    legacy = f'[{CRI_REGISTRY}.mirrors."{registry}"]\n  endpoint = ["http://{registry}"]\n'
    with Containerd(cri_registry=legacy) as node:
        node.cri.pull(image)
        assert node.cri.repo_digest(image) == digest


def test_secure_registry_with_a_custom_ca_and_credentials(ctx, port, mynginx, tmp_path):
    layout, digest = mynginx
    registry = f"127.0.0.1:{port}"
    config = {
        **tls_config(pki.make_ca("enterprise-ca"), "127.0.0.1"),
        "auth-basic-user": USER,
        "auth-basic-password": PASSWORD,
    }
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    image = f"{registry}/mynginx:registry"
    ctx.run(ctx.on.action("push", params={"image": f"oci:{layout}:registry", "tag": image}), state)
    assert ctx.action_results["outcome"] == "success"

    hosts_dir = tmp_path / "certs.d"
    results = client_config(ctx, state, hosts_dir, **{"include-password": True})
    assert f'ca = "{hosts_dir}/{registry}/ca.crt"' in results["hosts-toml"]
    auth = results["containerd-auth-toml"]
    assert f'[{CRI_REGISTRY}.configs."{registry}".auth]' in auth

    with (
        Containerd(cri_registry=cri_registry(hosts_dir)) as node,
        pytest.raises(CRIError, match="401 Unauthorized"),
    ):
        node.cri.pull(image)
    with Containerd(cri_registry=cri_registry(hosts_dir, auth)) as node:
        node.cri.pull(image)
        assert node.cri.repo_digest(image) == digest


def test_a_registry_k8s_io_mirror_with_override_path(ctx, port, tmp_path):
    layout = tmp_path / "google_containers"
    digest = oci.build_image(layout, "registry.k8s.io/pause:3.9", files={"pause": b"pause\n"})
    registry = f"127.0.0.1:{port}"
    state = ctx.run(
        ctx.on.install(), unit_state(port, config=tls_config(pki.make_ca(), "127.0.0.1"))
    )
    ctx.run(
        ctx.on.action("push", params={"image": f"oci:{layout}", "namespace": "google_containers"}),
        state,
    )
    assert ctx.action_results["raw"] == f"pushed {registry}/google_containers/pause:3.9"

    hosts_dir = tmp_path / "certs.d"
    results = client_config(
        ctx, state, hosts_dir, **{"mirror-of": "registry.k8s.io", "namespace": "google_containers"}
    )
    toml = results["hosts-toml"]
    assert f'[host."https://{registry}/v2/google_containers"]' in toml
    assert "override_path = true" in toml

    node = Containerd(cri_registry=cri_registry(hosts_dir), etc_hosts={"registry.k8s.io": NOWHERE})
    with node:
        node.cri.pull("registry.k8s.io/pause:3.9")
        assert node.cri.repo_digest("registry.k8s.io/pause:3.9") == digest
