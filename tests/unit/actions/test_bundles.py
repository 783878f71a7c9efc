"""Image bundles: what they hold, where each image lands, how they unpack (no copy here)."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections import namedtuple
from pathlib import Path

import pytest
from ops import testing

from actions import bundles
from actions.bundles import BundleError, read_bundle, unpacked
from actions.push import InvalidPushError, plan_copies
from charm_context import unit_state
from support import oci

CONTAINERD_NAME = "io.containerd.image.name"


@pytest.fixture
def layout(tmp_path) -> tuple[Path, dict[str, str]]:
    """An OCI layout of three images named three ways; ref name -> digest.

    "v1" carries containerd's full name, "gcr.io/team/tool:v2" is a full ref
    name, "v3" only a tag (the file then names the repository).
    """
    path = tmp_path / "layout"
    base = oci.make_layer(oci.random_layer(1024, "base"))
    digests = {
        ref: oci.build_image(path, ref, layers=[base, oci.random_layer(512, ref)])
        for ref in ("v1", "gcr.io/team/tool:v2", "v3")
    }
    oci.annotate(path, "v1", {CONTAINERD_NAME: "gcr.io/team/app:v1"})
    return path, digests


@pytest.mark.parametrize("compression", ["", "gzip", "xz", "bzip2", "zstd"])
def test_an_oci_archive_lists_every_image_whatever_its_compression(layout, tmp_path, compression):
    path, digests = layout
    # The name says nothing: the first bytes tell the compression.
    archive = oci.write_archive(path, tmp_path / "images.tar", compression=compression)

    bundle = read_bundle(archive)

    assert (bundle.format, bundle.compression) == ("oci", compression)
    assert [(i.reference, i.tag, i.digest) for i in bundle.images] == [
        ("gcr.io/team/app:v1", "v1", digests["v1"]),
        ("gcr.io/team/tool:v2", "", digests["gcr.io/team/tool:v2"]),
        ("", "v3", digests["v3"]),
    ]
    blobs = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert bundle.temp_disk == blobs, "what unpacking writes: the layout's files"
    assert read_bundle(path).images == bundle.images
    assert read_bundle(path).temp_disk == 0, "a layout directory is read in place"


def test_every_image_lands_under_its_source_path_in_the_namespace(layout, tmp_path):
    path, _ = layout
    archive = oci.write_archive(path, tmp_path / "bundle.tar.xz", compression="xz")

    copies = plan_copies(f"{archive}", namespace="test-namespace")

    assert [(c.source, c.destination, c.error) for c in copies] == [
        (f"{archive} (gcr.io/team/app:v1)", "test-namespace/team/app:v1", ""),
        (f"{archive} (gcr.io/team/tool:v2)", "test-namespace/team/tool:v2", ""),
        (f"{archive} (v3)", "test-namespace/bundle:v3", ""),
    ]
    assert all(c.copy_all for c in copies)
    (one,) = plan_copies(f"oci-archive:{archive}:gcr.io/team/tool:v2", tag="solo:1")
    assert (one.source, one.destination) == (
        f"oci-archive:{archive}:gcr.io/team/tool:v2",
        "solo:1",
    )
    (by_tag,) = plan_copies(f"oci-archive:{archive}:v1")
    assert by_tag.destination == "team/app:v1"
    with pytest.raises(InvalidPushError, match="tag: names the destination of one image"):
        plan_copies(str(archive), tag="solo:1")
    (missing,) = plan_copies(f"oci-archive:{archive}:v9")
    assert missing.error == (
        f"{archive} holds no image named 'v9' (names: gcr.io/team/app:v1, gcr.io/team/tool:v2, v3)"
    )


def test_a_file_name_that_is_no_repository_needs_tag_and_takes_it(layout, tmp_path):
    path, _ = layout
    archive = oci.write_archive(path, tmp_path / "My_Images!(2024).tar")

    (unnamed,) = plan_copies(f"oci-archive:{archive}:v3")
    assert unnamed.error == "cannot derive a repository from 'My_Images!(2024).tar'; give tag="
    (tagged,) = plan_copies(f"oci-archive:{archive}:v3", tag="team/app:v3")
    assert (tagged.destination, tagged.error) == ("team/app:v3", "")


def test_a_docker_save_archive_lists_each_tag_and_refuses_the_untagged(layout, tmp_path):
    path, _ = layout
    archive = oci.write_docker_save(
        path,
        tmp_path / "saved.tar",
        {"v1": ["gcr.io/team/app:v1", "nginx:1.25"], "v3": []},
    )
    bundle = read_bundle(archive)
    assert bundle.format == "docker"
    assert [(i.reference, i.position) for i in bundle.images] == [
        ("gcr.io/team/app:v1", 0),
        ("nginx:1.25", 0),
        ("", 1),
    ]
    assert bundle.temp_disk == 0, "an uncompressed docker archive is read in place"

    copies = plan_copies(str(archive))
    assert [(c.destination, c.error) for c in copies] == [
        ("team/app:v1", ""),
        ("nginx:1.25", ""),
        ("", "image 2 of saved.tar carries no name; push it alone with tag="),
    ]
    gzipped = oci.write_archive(path, tmp_path / "x.tgz", compression="gzip")
    assert read_bundle(gzipped).temp_disk > 0


def test_a_ctr_export_archive_is_read_as_oci_unless_asked_for_docker(layout, tmp_path):
    path, digests = layout
    oci.write_docker_save(path, tmp_path / "docker.tar", {"v1": ["gcr.io/team/app:v1"]})
    both = tmp_path / "both"
    shutil.copytree(path, both)
    with tarfile.open(tmp_path / "docker.tar") as tar:
        tar.extract("manifest.json", both)
    archive = oci.write_archive(both, tmp_path / "export.tar")

    assert read_bundle(archive).format == "oci"
    assert read_bundle(archive).images[0].digest == digests["v1"]
    assert read_bundle(archive, "docker-archive").format == "docker"


def test_a_multi_arch_index_missing_a_platform_copies_only_this_units(layout, tmp_path):
    path, _ = layout
    arm = oci.build_image(path, "arm", files={"a": b"arm"}, architecture="arm64")
    oci.build_image(path, "amd", files={"a": b"amd"})
    index = oci.build_index(path, "multi", ["arm", "amd"])
    whole = oci.write_archive(path, tmp_path / "whole.tar.zst", compression="zstd")
    partial = oci.write_archive(
        path, tmp_path / "partial.tar", skip=[f"blobs/sha256/{arm.split(':')[1]}"]
    )

    (complete,) = [i for i in read_bundle(whole).images if i.tag == "multi"]
    assert (complete.digest, complete.multi_arch, complete.complete) == (index, True, True)
    (incomplete,) = [i for i in read_bundle(partial).images if i.tag == "multi"]
    assert (incomplete.multi_arch, incomplete.complete) == (True, False)
    (copy,) = plan_copies(f"oci-archive:{partial}:multi")
    assert not copy.copy_all


def test_unpacking_writes_only_the_layout_and_removes_it(layout, tmp_path):
    path, digests = layout
    evil = tmp_path / "evil"
    shutil.copytree(path, evil)
    (evil / "notes.txt").write_text("not part of a layout")
    os.symlink("/etc/passwd", evil / "blobs" / "sha256" / "link")
    archive = oci.write_archive(evil, tmp_path / "bundle.tar.gz", compression="gzip")
    bundle = read_bundle(archive)
    work = tmp_path / "work"
    work.mkdir()
    logged: list[str] = []

    with unpacked(bundle, work, logged.append) as source:
        refs = [source(image) for image in bundle.images]
        (tmp,) = work.iterdir()
        files = {p.relative_to(tmp / "layout").as_posix() for p in (tmp / "layout").rglob("*")}
        image_index = json.loads(Path(refs[0].split(":")[1], "index.json").read_text())

    assert files == {p.relative_to(path).as_posix() for p in path.rglob("*")}, (
        "no stray file, no link"
    )
    assert [r.rsplit(":", 1)[1] for r in refs] == ["image"] * 3
    assert image_index["manifests"][0]["digest"] == digests["v1"]
    assert logged == [f"unpacking {archive} ({bundles.size_text(bundle.temp_disk)}) into {tmp}"]
    assert list(work.iterdir()) == [], "removed at the end"


def test_unpacking_refuses_a_disk_too_small_and_a_broken_archive(layout, tmp_path, monkeypatch):
    path, _ = layout
    archive = oci.write_archive(path, tmp_path / "bundle.tar.xz", compression="xz")
    bundle = read_bundle(archive)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(bundles.shutil, "disk_usage", lambda _: usage(0, 0, 1024))
    with (
        pytest.raises(BundleError, match=r"needs .* KiB in .*, which has 1.0 KiB free"),
        unpacked(bundle, tmp_path, print),
    ):
        pass
    monkeypatch.undo()

    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(BundleError, match=f"cannot read {archive}"):
        read_bundle(archive)
    (copy,) = plan_copies(str(archive))
    assert copy.error.startswith(f"cannot read {archive}")
    not_a_bundle = tmp_path / "empty.tar"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x").write_text("x")
    oci.write_archive(tmp_path / "plain", not_a_bundle)
    with pytest.raises(BundleError, match="neither an OCI archive"):
        read_bundle(not_a_bundle)


def test_a_list_file_gives_references_one_or_more_a_line(tmp_path):
    images = tmp_path / "images.txt"
    images.write_text(
        "# Charmed Kubernetes images\n"
        "registry.k8s.io/pause:3.9\n"
        "\n"
        "docker.io/calico/cni:v3.25.1  # the CNI\n"
        "quay.io/a/b:1 quay.io/a/c:2\n"
    )
    copies = plan_copies(f"@{images} nginx:1.25")
    assert [c.source for c in copies] == [
        "registry.k8s.io/pause:3.9",
        "docker.io/calico/cni:v3.25.1",
        "quay.io/a/b:1",
        "quay.io/a/c:2",
        "nginx:1.25",
    ]
    nested = tmp_path / "nested.txt"
    nested.write_text(f"@{images}\n")
    for text, message in [
        (f"@{nested}", f"image: {nested} names another list (@{images}); give it directly"),
        ("@images.txt", "image: @images.txt: give the list file's absolute path"),
        (f"@{tmp_path}/none.txt", f"image: cannot read the list {tmp_path}/none.txt"),
    ]:
        with pytest.raises(InvalidPushError) as error:
            plan_copies(text)
        assert str(error.value).startswith(message)


def test_bundle_images_lists_without_pushing(ctx, machine, port, layout, tmp_path):
    path, digests = layout
    archive = oci.write_archive(path, tmp_path / "bundle.tar.xz", compression="xz")
    state = unit_state(port)
    ctx.run(
        ctx.on.action("bundle-images", params={"path": str(archive), "namespace": "ns"}), state
    )
    results = ctx.action_results
    assert results is not None
    assert results["count"] == 3
    assert results["images"]["1"] == {
        "source": f"{archive} (gcr.io/team/app:v1)",
        "name": "gcr.io/team/app:v1",
        "digest": digests["v1"],
        "destination": f"127.0.0.1:{port}/ns/team/app:v1",
    }
    assert results["temp-disk"].startswith(f"{archive}: ")
    assert machine.launches["docker-registry"] == 0, "nothing started, nothing pushed"
    assert list(tmp_path.glob(".push-*")) == []

    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("bundle-images", params={"path": "nginx:1.25"}), state)
    assert failed.value.message == (
        "1 of 1 images cannot be pushed: nginx:1.25: not a file on the unit"
    )


def test_two_images_landing_at_the_same_place_fail_the_second():
    copies = plan_copies("gcr.io/team/app:1 quay.io/team/app:1 quay.io/team/app:2")
    assert [c.error for c in copies] == [
        "",
        "lands at team/app:1 as gcr.io/team/app:1 does;"
        " push it separately, under another namespace",
        "",
    ]
