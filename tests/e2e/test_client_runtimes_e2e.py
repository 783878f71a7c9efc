"""Runtimes other than containerd configured only from client-config's output.

podman (CRI-O reads the same `registries.conf` and `auth.json`, through the same
containers/image library) pulls an upstream's image through the registry as a
namespaced mirror, with the upstream stopped, so that the image can only come from
the mirror. podman runs rootful with its own temporary storage (graph root,
run root, vfs) and reads exactly the printed `registries.conf`
(`CONTAINERS_REGISTRIES_CONF`) and `auth.json` (`--authfile`); the registry's CA is
the printed `ca-crt`, given by `--cert-dir` as `/etc/containers/certs.d/<netloc>/`
would give it.

k3s and RKE2: the real containerd pulls with the hosts.toml files and config.toml login
k3s writes from the printed `registries.yaml` (see `support/k3s.py`), the upstream
stopped; a namespace's `rewrite` needs k3s's own containerd and is checked as text.

Docker: dockerd cannot run in these tests (no Docker engine in Debian's test
dependencies, and it would take over the host's networking), so its `daemon.json`
is checked in the unit tests only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ops import testing

from charm_context import tls_config, unit_state
from support import k3s, oci, pki, skopeo
from support.containerd import Containerd
from support.node import cri_registry
from support.registry import RegistryProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
]
LOGIN = {"auth-basic-user": "puller", "auth-basic-password": "pull-Secret-19"}
NAMESPACE = "edge-site"
PODMAN_TIMEOUT = 120.0


def podman(tmp_path: Path, registries_conf: Path, *args: str) -> subprocess.CompletedProcess:
    """Rootful podman with storage of its own under `tmp_path`, reading only `registries_conf`."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
        # No containers.conf or storage.conf of the host's: all of it comes from here.
        "CONTAINERS_CONF": str(tmp_path / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(tmp_path / "storage.conf"),
    }
    (tmp_path / "containers.conf").touch()
    (tmp_path / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{tmp_path}/runroot"\n'
        f'graphroot = "{tmp_path}/root"\n'
    )
    argv = ["podman", "--storage-driver", "vfs", "--events-backend", "none", *args]
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=PODMAN_TIMEOUT, check=False
    )


@dataclass(frozen=True)
class CarriedIn:
    """A charm unit (TLS, a login) holding an upstream's image; the upstream is stopped."""

    state: testing.State
    registry: str
    upstream: str
    digest: str


def carry_in(ctx, port: int, tmp_path: Path, namespace: str = "") -> CarriedIn:
    """The site's operator pushes an upstream's team/app:1 into the unit (under `namespace`)."""
    own_ca = pki.make_ca("site-ca")
    state = ctx.run(
        ctx.on.install(), unit_state(port, config={**tls_config(own_ca, "127.0.0.1"), **LOGIN})
    )
    layout = tmp_path / "layout"
    digest = oci.build_image(layout, "team/app:1", layers=[oci.random_layer(16 * 1024, "app")])
    with RegistryProcess() as upstream:
        skopeo.copy(
            oci.layout_ref(layout, "team/app:1"),
            f"docker://{upstream.netloc}/team/app:1",
            dest_tls_verify=False,
        )
        params = {
            "image": f"{upstream.netloc}/team/app:1",
            "namespace": namespace,
            "source-tls-verify": False,
        }
        ctx.run(ctx.on.action("push", params=params), state)
        assert ctx.action_results["outcome"] == "success"
    return CarriedIn(state, f"127.0.0.1:{port}", upstream.netloc, digest)


def test_podman_pulls_through_a_namespaced_mirror_with_only_the_printed_files(ctx, port, tmp_path):
    site = carry_in(ctx, port, tmp_path, NAMESPACE)
    state, registry, upstream_netloc = site.state, site.registry, site.upstream
    params = {"mirror-of": upstream_netloc, "namespace": NAMESPACE, "include-password": True}
    ctx.run(ctx.on.action("client-config", params=params), state)
    results = ctx.action_results
    registries_conf = tmp_path / "registries.conf"
    registries_conf.write_text(results["registries-conf"])
    auth_json = tmp_path / "auth.json"
    auth_json.write_text(results["containers-auth-json"])
    certs = tmp_path / "certs.d" / registry
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_text(results["ca-crt"])

    image = f"{upstream_netloc}/team/app:1"
    pulled = podman(
        tmp_path, registries_conf, "pull", "--authfile", str(auth_json), "--cert-dir", str(certs),
        image,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    inspected = podman(
        tmp_path, registries_conf, "image", "inspect", "--format", "{{.Digest}}", image
    )
    assert inspected.stdout.strip() == site.digest, "the upstream's image, from the mirror"

    # Without the login the mirror refuses, and the upstream is gone: nothing to pull.
    podman(tmp_path, registries_conf, "rmi", image)
    anonymous = podman(tmp_path, registries_conf, "pull", "--cert-dir", str(certs), image)
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr.lower(), anonymous.stderr


def test_containerd_pulls_with_what_k3s_derives_from_the_printed_registries_yaml(
    ctx, port, tmp_path
):
    """k3s writes hosts.toml files and config.toml logins from registries.yaml: so here."""
    site = carry_in(ctx, port, tmp_path)
    state, registry, upstream_netloc, digest = (
        site.state,
        site.registry,
        site.upstream,
        site.digest,
    )

    params = {"mirror-of": upstream_netloc, "include-password": True}
    ctx.run(ctx.on.action("client-config", params=params), state)
    results = ctx.action_results
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(results["ca-crt"])
    printed_ca = f"/etc/rancher/docker-registry/{registry}/ca.crt"
    registries = yaml.safe_load(results["registries-yaml"].replace(printed_ca, str(ca_file)))
    hosts_dir = tmp_path / "certs.d"
    k3s.write_hosts_dir(registries, hosts_dir)
    assert k3s.hosts_tomls(registries)[upstream_netloc].splitlines()[2:] == [
        "",
        f'[host."https://{registry}/v2"]',
        '  capabilities = ["pull", "resolve"]',
        f'  ca = ["{ca_file}"]',
    ]

    with Containerd(cri_registry=cri_registry(hosts_dir, k3s.cri_auth(registries))) as node:
        mirrored = f"{upstream_netloc}/team/app:1"
        node.cri.pull(mirrored)
        assert node.cri.repo_digest(mirrored) == digest, "from the mirror: upstream is gone"
        own = f"{registry}/team/app:1"
        node.cri.pull(own)
        assert node.cri.repo_digest(own) == digest

    # A namespace is a rewrite, which k3s's containerd applies (Debian's has no rewrites).
    params = {"mirror-of": upstream_netloc, "namespace": NAMESPACE}
    ctx.run(ctx.on.action("client-config", params=params), state)
    registries = yaml.safe_load(ctx.action_results["registries-yaml"])
    assert k3s.hosts_tomls(registries)[upstream_netloc].splitlines()[-2:] == [
        f'  [host."https://{registry}/v2".rewrite]',
        f'    "^(.*)$" = "{NAMESPACE}/$1"',
    ]
