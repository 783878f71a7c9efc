"""Where the space goes, against a real registry: the disk-usage action's totals match the disk.

Images built by the tests (sharing a base layer) are pushed with skopeo
under several repositories; one loses its tag (untagged), one is deleted
(garbage), one is a multi-arch index. The expected bytes come from the OCI
layout the images were built in; the stored bytes from walking the disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from charm_context import unit_state
from support import oci, skopeo

pytestmark = pytest.mark.e2e

BLOBS = "srv/registry/docker/registry/v2/blobs/sha256"
IMAGES = ("alpha", "beta", "gamma", "delta", "arm", "amd")


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """One image per name sharing a base layer, and `multi` (an index of arm and amd)."""
    path = tmp_path_factory.mktemp("layout")
    base = oci.make_layer(oci.random_layer(64 * 1024, "base"))
    digests = {
        name: oci.build_image(path, name, layers=[base, oci.random_layer(16 * 1024, name)])
        for name in IMAGES
    }
    digests["multi"] = oci.build_index(path, "multi", ["arm", "amd"])
    return path, digests


def image_blobs(path: Path, digest: str) -> dict[str, int]:
    """Every blob an image (or index) stores, read from the layout: digest -> bytes."""
    raw = oci.read_blob(path, digest)
    manifest = json.loads(raw)
    blobs = {digest: len(raw)}
    for descriptor in [manifest.get("config"), *manifest.get("layers", [])]:
        if descriptor:
            blobs[descriptor["digest"]] = descriptor["size"]
    for child in manifest.get("manifests", []):
        blobs |= image_blobs(path, child["digest"])
    return blobs


def union(*blob_maps: dict[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for blobs in blob_maps:
        merged |= blobs
    return merged


def blobs_on_disk(root: Path) -> dict[str, int]:
    return {
        f"sha256:{Path(folder).name}": os.path.getsize(os.path.join(folder, "data"))
        for folder, _, files in os.walk(root / BLOBS)
        if "data" in files
    }


def test_disk_usage_matches_the_disk_and_garbage_collect_frees_what_it_predicts(
    ctx, machine, port, layout
):
    path, digests = layout
    state = ctx.run(ctx.on.install(), unit_state(port, config={"storage-delete": True}))
    pushes = [
        ("alpha", "a/one:v1"),
        ("alpha", "b/two:v1"),
        ("beta", "a/one:v2"),
        ("gamma", "b/two:v2"),
        ("beta", "b/two:v2"),  # gamma loses its tag: untagged in b/two
        ("delta", "c/three:v1"),
        ("multi", "d/multi:v1"),
    ]
    for name, destination in pushes:
        skopeo.copy(
            oci.layout_ref(path, name),
            f"docker://127.0.0.1:{port}/{destination}",
            dest_tls_verify=False,
            all_images=True,
        )
    ctx.run(ctx.on.action("rmi", params={"image": "c/three:v1"}), state)  # delta: garbage
    assert ctx.action_results["outcome"] == "success"

    ctx.run(ctx.on.action("disk-usage", params={"top": 3}), state)
    found = dict(ctx.action_results or {})

    blobs = {name: image_blobs(path, digest) for name, digest in digests.items()}
    repositories = {
        "a/one": union(blobs["alpha"], blobs["beta"]),
        "b/two": union(blobs["alpha"], blobs["beta"], blobs["gamma"]),
        "d/multi": blobs["multi"],
    }
    referenced = union(*repositories.values())
    tagged = union(blobs["alpha"], blobs["beta"], blobs["multi"])
    shared = {
        digest: size
        for digest, size in referenced.items()
        if sum(digest in repo for repo in repositories.values()) > 1
    }
    on_disk = blobs_on_disk(machine.root)
    garbage = {digest: size for digest, size in on_disk.items() if digest not in referenced}

    assert found["total-bytes"] == sum(referenced.values())
    assert found["stored-bytes"] == sum(on_disk.values())
    assert found["garbage-bytes"] == sum(garbage.values())
    assert set(garbage) == set(blobs["delta"]) - set(referenced), "delta's own blobs only"
    assert found["shared-bytes"] == sum(shared.values())
    assert found["untagged-count"] == 1
    assert found["untagged"].split()[0] == f"b/two@{digests['gamma']}"
    untagged_only = set(referenced) - set(tagged)
    assert found["untagged-bytes"] == sum(referenced[d] for d in untagged_only)
    lines = found["repositories"].splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"b/two {sum(repositories['b/two'].values())} (")
    assert found["repository-count"] == 4, "c/three stays listed, empty"
    assert found["tag-count"] == 5
    assert f"d/multi:v1 {sum(blobs['multi'].values())} (" in found["tags"]
    assert len(json.dumps(found)) < 128 * 1024

    # Delete the untagged manifest through the API, then collect: exactly the prediction.
    ctx.run(ctx.on.action("rmi", params={"image": f"b/two@{digests['gamma']}"}), state)
    ctx.run(ctx.on.action("garbage-collect", params={}), state)
    after = blobs_on_disk(machine.root)
    assert sum(on_disk.values()) - sum(after.values()) == (
        found["garbage-bytes"] + found["untagged-bytes"]
    )
    assert set(after) == set(tagged)
    assert (
        skopeo.inspect_digest(f"docker://127.0.0.1:{port}/d/multi:v1", tls_verify=False)
        == digests["multi"]
    )
