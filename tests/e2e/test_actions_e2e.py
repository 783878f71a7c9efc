"""The image actions against real registries: skopeo pushes, containerd pulls, the disk tells.

A source registry started by the tests holds images they built; the charm's
own code (Scenario + LocalMachine) runs the unit's registry and the actions.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

from charm_context import unit_state
from support import oci, pki, skopeo
from support.node import pull_plain
from support.registry import RegistryProcess
from support.wait import free_port
from workload.registry_api import LocalAccess, RegistryAPIError, RegistryClient, local_access

pytestmark = pytest.mark.e2e

SOURCE_USER, SOURCE_PASSWORD = "puller", "source-Secret-9"
OWN_USER, OWN_PASSWORD = "admin", "own-Secret-7"
OWN_AUTH = {"auth-basic-user": OWN_USER, "auth-basic-password": OWN_PASSWORD}
NAMES = ("base/alpha", "base/beta", "gamma")
REPOSITORIES = "srv/registry/docker/registry/v2/repositories"
BLOBS = "srv/registry/docker/registry/v2/blobs/sha256"


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An OCI layout with one image per name, sharing a base layer; name -> digest."""
    path = tmp_path_factory.mktemp("layout")
    base = oci.make_layer(oci.random_layer(64 * 1024, "base"))
    digests = {
        name: oci.build_image(
            path, name.replace("/", "-"), layers=[base, oci.random_layer(32 * 1024, name)]
        )
        for name in NAMES
    }
    return path, digests


@pytest.fixture(scope="module")
def source(layout) -> Iterator[RegistryProcess]:
    """A source registry with basic auth holding the layout's images as <name>:v1."""
    path, _ = layout
    with RegistryProcess(users={SOURCE_USER: SOURCE_PASSWORD}) as registry:
        for name in NAMES:
            skopeo.copy(
                oci.layout_ref(path, name.replace("/", "-")),
                f"docker://{registry.ref(name, 'v1')}",
                dest_tls_verify=False,
                dest_creds=registry.creds,
            )
        yield registry


def push_params(images: str, **params) -> dict:
    return {
        "image": images,
        "source-username": SOURCE_USER,
        "source-password": SOURCE_PASSWORD,
        "source-tls-verify": False,
        **params,
    }


def tags_on_disk(root: Path) -> set[str]:
    """repository:tag for every tag the registry's filesystem storage holds."""
    repositories = root / REPOSITORIES
    return {
        f"{tags.parent.parent.relative_to(repositories)}:{tag.name}"
        for tags in repositories.glob("**/_manifests/tags")
        for tag in tags.iterdir()
    }


def assert_no_secret(ctx, *texts: str) -> None:
    everything = json.dumps(ctx.action_results) + "\n".join(ctx.action_logs) + "".join(texts)
    for secret in (SOURCE_PASSWORD, OWN_PASSWORD, "wrong-Password-3"):
        assert secret not in everything


def test_push_single_batch_and_namespaced_then_pull(
    ctx, machine, port, source, layout, containerd, tmp_path
):
    _, digests = layout
    state = ctx.run(ctx.on.install(), unit_state(port))
    netloc = f"127.0.0.1:{port}"

    ctx.run(
        ctx.on.action("push", params=push_params(source.ref("gamma", "v1"), tag="solo/gamma:1")),
        state,
    )
    assert ctx.action_results["outcome"] == "success"
    assert ctx.action_results["raw"] == f"pushed {netloc}/solo/gamma:1"
    assert ctx.action_results["images"]["1"]["digest"] == digests["gamma"]
    assert_no_secret(ctx)

    batch = "\n".join(source.ref(name, "v1") for name in NAMES)
    ctx.run(ctx.on.action("push", params=push_params(batch, namespace="mirror")), state)
    results = ctx.action_results
    assert results["outcome"] == "success"
    expected = {f"{netloc}/mirror/{name}:v1": digests[name] for name in NAMES}
    assert {i["destination"]: i["digest"] for i in results["images"].values()} == expected
    assert len(ctx.action_logs) >= len(NAMES)
    assert all(any(dest in line for line in ctx.action_logs) for dest in expected)
    assert_no_secret(ctx)

    for ref, digest in [*expected.items(), (f"{netloc}/solo/gamma:1", digests["gamma"])]:
        assert pull_plain(containerd, tmp_path / "certs.d", ref) == digest
    assert tags_on_disk(machine.root) == {
        "solo/gamma:1",
        *(f"mirror/{name}:v1" for name in NAMES),
    }


def test_push_from_archive_and_layout_files(ctx, machine, port, layout, containerd, tmp_path):
    path, digests = layout
    oci_archive = tmp_path / "bundle.tar"
    docker_archive = tmp_path / "docker.tar"
    skopeo.copy(oci.layout_ref(path, "gamma"), f"oci-archive:{oci_archive}:v2")
    skopeo.copy(
        oci.layout_ref(path, "base-alpha"),
        f"docker-archive:{docker_archive}:tools/alpha:v3",
        preserve_digests=False,
    )
    docker_digest = skopeo.inspect_digest(f"docker-archive:{docker_archive}")
    state = ctx.run(ctx.on.install(), unit_state(port))
    netloc = f"127.0.0.1:{port}"

    images = f"oci-archive:{oci_archive} docker-archive:{docker_archive} oci:{path}:base-beta"
    ctx.run(ctx.on.action("push", params={"image": images, "namespace": "airgap"}), state)

    pushed = {i["destination"]: i["digest"] for i in ctx.action_results["images"].values()}
    assert pushed == {
        f"{netloc}/airgap/bundle:v2": digests["gamma"],
        f"{netloc}/airgap/tools/alpha:v3": docker_digest,
        f"{netloc}/airgap/{path.name}:base-beta": digests["base/beta"],
    }
    for ref, digest in pushed.items():
        assert pull_plain(containerd, tmp_path / "certs.d", ref) == digest


def test_a_batch_with_bad_entries_reports_each_and_pushes_the_good(
    ctx, machine, port, source, layout, tmp_path
):
    path, digests = layout
    good_file = tmp_path / "good.tar"
    skopeo.copy(oci.layout_ref(path, "gamma"), f"oci-archive:{good_file}:v1")
    state = ctx.run(ctx.on.install(), unit_state(port))
    closed = f"127.0.0.1:{free_port()}"
    images = [
        f"oci-archive:{good_file}",
        "Not/A:Valid:Ref",
        f"{closed}/nobody/home:v1",
        source.ref("gamma", "v1"),
        f"oci-archive:{tmp_path / 'missing.tar'}",
    ]
    params = push_params(" ".join(images), **{"source-password": "wrong-Password-3"})

    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("push", params=params), state)

    assert failed.value.message.startswith("4 of 5 images failed")
    results = ctx.action_results["images"]
    assert results["1"]["digest"] == digests["gamma"]
    assert "invalid" in results["2"]["error"]
    assert "connection refused" in results["3"]["error"]
    assert "unauthorized" in results["4"]["error"]
    assert "no such file" in results["5"]["error"]
    assert ctx.action_results["outcome"] == "failure"
    assert ctx.action_results["raw"] == f"pushed 127.0.0.1:{port}/good:v1"
    assert tags_on_disk(machine.root) == {"good:v1"}
    assert_no_secret(ctx, failed.value.message)


@pytest.fixture
def server_tls():
    ca = pki.make_ca("registry-ca")
    cert, key = pki.issue(ca, "127.0.0.1", ["127.0.0.1", "localhost"])
    return ca, cert, key


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_push_and_list_over_https_with_basic_auth(ctx, port, source, layout, server_tls):
    """Each request costs a bcrypt check in the registry: keep this test to a few."""
    ca, cert, key = server_tls
    tls = {"tls-cert-blob": b64(cert), "tls-key-blob": b64(key), "tls-ca-blob": b64(ca.cert_pem)}
    state = ctx.run(ctx.on.install(), unit_state(port, config={**tls, **OWN_AUTH}))

    ctx.run(ctx.on.action("push", params=push_params(source.ref("base/alpha", "v1"))), state)
    assert ctx.action_results["images"]["1"]["digest"] == layout[1]["base/alpha"]

    assert_no_secret(ctx)
    ctx.run(ctx.on.action("images", params={"digests": True}), state)
    assert ctx.action_results["images"] == f"base/alpha:v1 {layout[1]['base/alpha']}"


def test_images_rmi_and_garbage_collect_match_the_disk(ctx, machine, port, source, layout):
    _, digests = layout
    config = {"storage-delete": True}
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    batch = " ".join(source.ref(name, "v1") for name in NAMES)
    ctx.run(ctx.on.action("push", params=push_params(batch)), state)
    # An image that loses its tag: only --delete-untagged collects it.
    ctx.run(
        ctx.on.action("push", params=push_params(source.ref("gamma", "v1"), tag="base/beta:v1")),
        state,
    )

    ctx.run(ctx.on.action("images", params={}), state)
    listed = set(ctx.action_results["images"].splitlines())
    assert listed == tags_on_disk(machine.root) == {f"{name}:v1" for name in NAMES}
    ctx.run(ctx.on.action("images", params={"repository": "base/beta:v1", "digests": True}), state)
    assert ctx.action_results["images"] == f"base/beta:v1 {digests['gamma']}"
    plan = local_access_for(ctx, state)
    assert RegistryClient(plan).catalog(page_size=1) == sorted(NAMES)

    ctx.run(ctx.on.action("rmi", params={"image": f"127.0.0.1:{port}/base/alpha:v1"}), state)
    assert ctx.action_results["raw"] == f"deleted base/alpha@{digests['base/alpha']}"
    assert tags_on_disk(machine.root) == {"base/beta:v1", "gamma:v1"}
    ctx.run(ctx.on.action("images", params={}), state)
    assert set(ctx.action_results["images"].splitlines()) == {"base/beta:v1", "gamma:v1"}
    assert ctx.action_results["empty-repositories"] == 1, "base/alpha: still in the catalog"

    alpha_layer = blob_on_disk(machine.root, unique_layer(layout, "base/alpha"))
    beta_manifest = blob_on_disk(machine.root, digests["base/beta"])
    assert alpha_layer.exists()
    assert beta_manifest.exists()
    launches = machine.launches["docker-registry"]
    ctx.run(ctx.on.action("garbage-collect", params={"delete-untagged": True}), state)
    assert ctx.action_results["bytes-freed"] > 32 * 1024
    assert re.fullmatch(
        r"\d+ blobs marked, [1-9]\d* blobs and 1 manifests eligible for deletion",
        ctx.action_results["summary"],
    ), "the registry's counts line, not a per-blob line"
    assert not alpha_layer.exists()
    assert not beta_manifest.exists(), "the untagged manifest was collected"
    assert any("read-only" in line for line in ctx.action_logs)
    assert machine.commands[-1][0] == "docker-registry", "run as the service user"
    assert machine.launches["docker-registry"] == launches + 2, "read-only, then back"
    config_yml = (machine.root / "etc/docker/registry/config.yml").read_text()
    assert "readonly:\n      enabled: false" in config_yml

    # Back to read-write: pushes work, and what stayed still pulls.
    ctx.run(ctx.on.action("push", params=push_params(source.ref("base/alpha", "v1"))), state)
    assert ctx.action_results["outcome"] == "success"
    assert (
        skopeo.inspect_digest(f"docker://127.0.0.1:{port}/gamma:v1", tls_verify=False)
        == digests["gamma"]
    )


def local_access_for(ctx, state):
    with ctx(ctx.on.update_status(), state) as manager:
        return local_access(manager.charm.desired)


def blob_on_disk(root: Path, digest: str) -> Path:
    hexdigest = digest.removeprefix("sha256:")
    return root / BLOBS / hexdigest[:2] / hexdigest / "data"


def unique_layer(layout, name: str) -> str:
    path, digests = layout
    manifest = json.loads(oci.read_blob(path, digests[name]))
    return manifest["layers"][1]["digest"]


def test_rmi_without_storage_delete_fails_clearly(ctx, port, source):
    state = ctx.run(ctx.on.install(), unit_state(port))
    ctx.run(ctx.on.action("push", params=push_params(source.ref("gamma", "v1"))), state)
    with pytest.raises(testing.ActionFailed, match="storage-delete=true"):
        ctx.run(ctx.on.action("rmi", params={"image": "gamma:v1"}), state)
    ctx.run(ctx.on.action("images", params={}), state)
    assert ctx.action_results["images"] == "gamma:v1"


def test_the_api_client_dials_loopback_and_verifies_the_certificates_name():
    ca = pki.make_ca("registry-ca")
    cert, key = pki.issue(ca, "registry.example", ["registry.example"])
    with RegistryProcess(tls_cert_pem=cert, tls_key_pem=key) as registry:
        named = LocalAccess(
            "registry.example", registry.port, tls=True, ca_pem=ca.cert_pem.decode()
        )
        assert RegistryClient(named).catalog() == []
        unnamed = dataclasses.replace(named, host="127.0.0.1")
        with pytest.raises(RegistryAPIError, match="certificate verify failed"):
            RegistryClient(unnamed).catalog()
        other_ca = pki.make_ca("other-ca").cert_pem.decode()
        with pytest.raises(RegistryAPIError, match="certificate verify failed"):
            RegistryClient(dataclasses.replace(named, ca_pem=other_ca)).catalog()
