"""Where the space goes, against a real registry: the disk-usage action's totals match the disk.

Images built by the tests (sharing a base layer) are pushed with skopeo
under several repositories; one loses its tag (untagged), one is deleted
(garbage), one is a multi-arch index. The expected bytes come from the OCI
layout the images were built in; the stored bytes from walking the disk.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from ops import testing

from charm_context import unit_state
from support import oci, skopeo
from support.load import Load, Target
from support.wait import wait_for
from workload.registry_api import RegistryAPIError, RegistryClient, local_access

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


REPOSITORIES = "srv/registry/docker/registry/v2/repositories"
POLICY = '- {repositories: "ci/*", keep-last: 2, keep-tags: ["v*", latest], untagged-days: 7}'


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> tuple[Path, list[str]]:
    """Fifteen images sharing a base layer, `img0`..`img14`; their digests."""
    path = tmp_path_factory.mktemp("builds")
    base = oci.make_layer(oci.random_layer(32 * 1024, "base"))
    digests = [
        oci.build_image(path, f"img{i}", layers=[base, oci.random_layer(8 * 1024, f"b{i}")])
        for i in range(15)
    ]
    return path, digests


def on_disk(root: Path) -> tuple[set[str], set[str]]:
    """repository:tag and repository@digest of every tag and manifest the storage holds."""
    repositories = root / REPOSITORIES
    tags = {
        f"{t.parent.parent.relative_to(repositories)}:{tag.name}"
        for t in repositories.glob("**/_manifests/tags")
        for tag in t.iterdir()
    }
    manifests = {
        f"{r.parent.parent.parent.relative_to(repositories)}@sha256:{rev.name}"
        for r in repositories.glob("**/_manifests/revisions/sha256")
        for rev in r.iterdir()
        if (rev / "link").exists()
    }
    return tags, manifests


def test_retention_dry_run_lists_exactly_the_policy_then_deletes_only_that(
    ctx, machine, port, builds
):
    path, img = builds
    config = {"storage-delete": True, "retention-policy": POLICY}
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    root = machine.root / REPOSITORIES
    pushes = [
        *((f"ci/app:b{i + 1}", i) for i in range(6)),
        ("ci/app:v1.0", 6),
        ("ci/app:latest", 7),
        ("ci/app:latest", 8),  # img7 untagged, made 10 days old below
        *((f"ci/lib:b{i + 1}", 9 + i) for i in range(3)),
        ("ci/lib:b4", 13),
        ("ci/lib:b4", 12),  # img13 untagged, recent: kept
        ("other/keep:b1", 0),
        ("other/keep:b2", 1),
        ("other/keep:b3", 14),
    ]
    now = time.time()
    for order, (destination, i) in enumerate(pushes):
        skopeo.copy(
            oci.layout_ref(path, f"img{i}"),
            f"docker://127.0.0.1:{port}/{destination}",
            dest_tls_verify=False,
        )
        repository, tag = destination.split(":")
        pushed = now - 3600 + order * 60  # an order the policy can tell apart
        os.utime(root / repository / "_manifests/tags" / tag / "current/link", (pushed, pushed))
    hexdigest = img[7].removeprefix("sha256:")
    old = now - 10 * 86400
    os.utime(root / "ci/app/_manifests/revisions/sha256" / hexdigest / "link", (old, old))

    expected = {
        *(f"ci/app@{img[i]}" for i in (0, 1, 2, 3, 7)),
        *(f"ci/lib@{img[i]}" for i in (9, 10)),
    }
    blobs = {i: image_blobs(path, digest) for i, digest in enumerate(img)}
    kept = union(*(blobs[i] for i in (4, 5, 6, 8, 11, 12, 13, 0, 1, 14)))
    deleted = union(*(blobs[int(i)] for i in (0, 1, 2, 3, 7, 9, 10)))
    predicted = sum(size for digest, size in deleted.items() if digest not in kept)

    before = on_disk(machine.root)
    ctx.run(ctx.on.action("apply-retention", params={}), state)
    found = dict(ctx.action_results or {})
    listed = {line.split()[0] for line in found["deletions"].splitlines()}
    assert found["dry-run"] is True
    assert listed == expected
    assert found["count"] == len(expected)
    assert found["bytes-freed"] == predicted
    assert on_disk(machine.root) == before, "a dry run deletes nothing"

    ctx.run(ctx.on.action("apply-retention", params={"dry-run": False}), state)
    assert ctx.action_results["outcome"] == "success"
    tags, manifests = on_disk(machine.root)
    assert manifests == before[1] - expected
    assert tags == {
        "ci/app:b5", "ci/app:b6", "ci/app:v1.0", "ci/app:latest",
        "ci/lib:b3", "ci/lib:b4",
        "other/keep:b1", "other/keep:b2", "other/keep:b3",
    }  # fmt: skip
    stored = blobs_on_disk(machine.root)
    ctx.run(ctx.on.action("garbage-collect", params={}), state)
    assert sum(stored.values()) - sum(blobs_on_disk(machine.root).values()) == predicted


def fire_timer(ctx, state):
    """What the timer's juju-exec dispatches: the scheduled_maintenance event, as a hook."""
    with ctx(ctx.on.update_status(), state) as manager:
        manager.charm.on.scheduled_maintenance.emit()
        return manager.run()


def test_scheduled_maintenance_applies_the_policy_then_collects_and_cuts_no_pull(
    ctx, machine, port, builds
):
    path, img = builds
    config = {
        "storage-delete": True,
        "retention-policy": "- {repositories: ci/*, keep-last: 1}",
        "maintenance-schedule": "daily",
    }
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    assert machine.timers == {"docker-registry-maintenance.timer"}
    for tag, i in (("b1", 0), ("b2", 1), ("b3", 2)):
        skopeo.copy(
            oci.layout_ref(path, f"img{i}"),
            f"docker://127.0.0.1:{port}/ci/app:{tag}",
            dest_tls_verify=False,
        )
    kept = json.loads(oci.read_blob(path, img[2]))
    targets = [
        Target(
            f"/v2/ci/app/blobs/{kept['layers'][1]['digest']}", digest=kept["layers"][1]["digest"]
        ),
        Target(f"/v2/ci/app/manifests/{img[2]}", accept=oci.MEDIA_TYPE_MANIFEST),
    ]
    stored = blobs_on_disk(machine.root)
    with Load("127.0.0.1", port, targets) as load:
        wait_for(lambda: load.count("ok") >= 8, timeout=60, what="pulls before the window")
        state = fire_timer(ctx, state)
        done = load.count("ok")
        wait_for(lambda: load.count("ok") >= done + 8, timeout=60, what="pulls after it")
    print(f"\npulls across the maintenance window: {dict(load.tally.outcomes)}")
    assert load.tally.outcomes["cut"] == 0, load.tally.errors
    assert load.tally.outcomes["failed"] == 0, load.tally.errors

    freed = sum(stored.values()) - sum(blobs_on_disk(machine.root).values())
    only_old = set(image_blobs(path, img[0])) | set(image_blobs(path, img[1]))
    assert freed == sum(stored[d] for d in only_old - set(image_blobs(path, img[2])))
    assert on_disk(machine.root)[0] == {"ci/app:b3"}
    assert "Last maintenance" in state.unit_status.message
    assert f"2 manifests deleted, {freed} bytes freed" in state.unit_status.message
    metrics = (machine.root / "var/lib/docker-registry-charm/metrics/maintenance.prom").read_text()
    assert "docker_registry_maintenance_last_run_success 1\n" in metrics
    assert f"docker_registry_maintenance_last_run_freed_bytes {freed}\n" in metrics
    assert (
        "readonly:\n      enabled: false"
        in (machine.root / "etc/docker/registry/config.yml").read_text()
    ), "writable again"


def test_pushes_in_the_read_only_window_get_the_registrys_answer(ctx, port):
    state = ctx.run(ctx.on.install(), unit_state(port, config={"storage-read-only": True}))
    with ctx(ctx.on.update_status(), state) as manager:
        client = RegistryClient(local_access(manager.charm.desired))
    with pytest.raises(RegistryAPIError) as refused:
        client.request("POST", "/v2/ci/app/blobs/uploads/")
    assert refused.value.status == 405, "Method Not Allowed, with no error code in the body"


def test_garbage_collect_refuses_delete_untagged_that_would_break_a_multi_arch_image(
    ctx, port, layout
):
    path, _ = layout
    state = ctx.run(ctx.on.install(), unit_state(port))
    skopeo.copy(
        oci.layout_ref(path, "multi"),
        f"docker://127.0.0.1:{port}/d/multi:v1",
        dest_tls_verify=False,
        all_images=True,
    )
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("garbage-collect", params={"delete-untagged": True}), state)
    assert failed.value.message.startswith("delete-untagged would break multi-arch images")
    assert "d/multi:v1" in failed.value.message
    out = path.parent / "pulled"
    skopeo.copy(
        f"docker://127.0.0.1:{port}/d/multi:v1",
        f"oci:{out}:x",
        src_tls_verify=False,
        all_images=True,
    )  # every platform image still pulls


def test_retention_without_storage_delete_says_how_to_allow_it(ctx, port, builds):
    path, _ = builds
    config = {"retention-policy": "- {repositories: '*', keep-last: 1}"}
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    for tag in ("b1", "b2"):
        skopeo.copy(
            oci.layout_ref(path, f"img{tag[1]}"),
            f"docker://127.0.0.1:{port}/app:{tag}",
            dest_tls_verify=False,
        )
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("apply-retention", params={"dry-run": False}), state)
    assert failed.value.message.endswith("run: juju config docker-registry storage-delete=true")
