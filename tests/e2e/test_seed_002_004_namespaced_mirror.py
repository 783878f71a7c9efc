"""Seeds 002 and 004: an image bundle carried into a site, pushed under a namespace, mirrored.

The guides: `bmctl push images --source=./bmpackages_VERSION.tar.xz
--private-registry=REGISTRY_IP:PORT/test-namespace`; nodes get
`registryMirrors: endpoint: https://REGISTRY_IP:PORT/v2/test-namespace` (with
`caCertPath`) for gcr.io and the `hosts` listed (somehost.io); a pull of
gcr.io/<repo>:<tag> then comes from the mirror, which "method 1" checks by
comparing repository digests; when the mirror cannot serve, pulls fail over
to gcr.io.

Here: the bundle is a multi-image OCI archive, xz-compressed; gcr.io and
somehost.io are emulated on loopback addresses of their own, port 443, with
the same images; the registry takes a login; the node is a containerd (CRI)
configured only from client-config's output (hosts.toml files, CA, the
login), with the public names mapped in its own namespace.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ops import testing

from charm_context import tls_config, unit_state
from support import oci, pki, skopeo
from support.containerd import Containerd
from support.node import client_config, cri_registry, public_registry

pytestmark = pytest.mark.e2e

PUBLIC = {"gcr.io": "127.12.2.1", "somehost.io": "127.12.2.2"}
LOGIN = {"auth-basic-user": "puller", "auth-basic-password": "pull-Secret-4"}
IMAGES = (
    "gcr.io/kubernetes-e2e-test-images/nautilus:1.0",
    "gcr.io/anthos-baremetal-release/kube-rbac-proxy:v0.6.0-gke.0",
    "somehost.io/kubernetes-e2e-test-images/sonobuoy:0.9",
)


def build_bundle(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """bmpackages_1.0.tar.xz: every image under its full name; the layout; name -> digest."""
    layout = tmp_path / "bmpackages"
    base = oci.make_layer(oci.random_layer(32 * 1024, "bm-base"))
    digests = {
        name: oci.build_image(layout, name, layers=[base, oci.random_layer(8 * 1024, name)])
        for name in IMAGES
    }
    bundle = oci.write_archive(layout, tmp_path / "bmpackages_1.0.tar.xz", compression="xz")
    return bundle, layout, digests


def manifest_requests(log: str, repository: str) -> int:
    """How many manifest requests for `repository` a registry's access log shows."""
    return len(re.findall(rf'"(?:GET|HEAD) /v2/{re.escape(repository)}/manifests/', log))


def test_a_bundle_pushed_under_a_namespace_is_pulled_through_the_mirror_and_fails_over(
    ctx, port, tmp_path
):
    bundle, layout, digests = build_bundle(tmp_path)
    public_ca = pki.make_ca("public-ca")
    own_ca = pki.make_ca("site-ca")
    config = {**tls_config(own_ca, "127.0.0.1"), **LOGIN}
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    registry = f"127.0.0.1:{port}"
    assert state.unit_status == testing.ActiveStatus(f"Ready at {registry} (https).")

    # bmctl push images --source=./bmpackages_1.0.tar.xz \
    #   --private-registry=$REGISTRY/test-namespace
    ctx.run(
        ctx.on.action("push", params={"image": str(bundle), "namespace": "test-namespace"}),
        state,
    )
    results = ctx.action_results
    assert results["outcome"] == "success"
    pushed = {i["destination"]: i["digest"] for i in results["images"].values()}
    assert pushed == {
        f"{registry}/test-namespace/{name.split('/', 1)[1]}": digest
        for name, digest in digests.items()
    }

    # registryMirrors: endpoint https://$REGISTRY/v2/test-namespace, caCertPath, hosts.
    hosts_dir = tmp_path / "certs.d"
    results = client_config(
        ctx,
        state,
        hosts_dir,
        **{"mirror-of": "gcr.io somehost.io", "namespace": "test-namespace"},
        **{"include-password": True},
    )
    assert f'[host."https://{registry}/v2/test-namespace"]' in results["hosts-toml"]
    assert "override_path = true" in results["hosts-toml"]
    # pullCredentialConfigPath: the login, as the node's containerd takes it.
    login = results["containerd-auth-toml"]

    with (
        public_registry("gcr.io", PUBLIC["gcr.io"], public_ca) as gcr,
        Containerd(
            cri_registry=cri_registry(hosts_dir, login),
            etc_hosts=PUBLIC,
            trusted_pem=public_ca.cert_pem,
        ) as node,
    ):
        name = IMAGES[0]
        repository = name.split("/", 1)[1].split(":")[0]
        skopeo.copy(
            oci.layout_ref(layout, name),
            f"docker://{gcr.netloc}/{name.split('/', 1)[1]}",
            dest_tls_verify=False,
        )

        # Method 1: the public and the mirror endpoint have the same repository digest.
        node.cri.pull(name)
        mirror_endpoint = f"{registry}/test-namespace/{name.split('/', 1)[1]}"
        node.cri.pull(mirror_endpoint)
        assert node.cri.repo_digest(name) == node.cri.repo_digest(mirror_endpoint)
        assert node.cri.repo_digest(name) == digests[name], "the source's digest"
        assert manifest_requests(gcr.log_tail(100_000), repository) == 0, "gcr.io not asked"
        other = IMAGES[2]
        node.cri.pull(other)
        assert node.cri.repo_digest(other) == digests[other], "somehost.io's, also mirrored"

        # The mirror is down: containerd fails over to gcr.io.
        ctx.run(ctx.on.action("stop"), state)
        node.cri.remove(name)
        node.cri.remove(mirror_endpoint)
        node.cri.pull(name)
        assert node.cri.repo_digest(name) == digests[name]
        assert manifest_requests(gcr.log_tail(100_000), repository) > 0, "gcr.io served it"
    ctx.run(ctx.on.action("start"), state)
