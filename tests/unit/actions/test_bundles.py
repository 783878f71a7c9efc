"""Image bundles: what they hold, where each image lands, how they unpack (no copy here)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import threading
from collections import namedtuple
from pathlib import Path

import pytest
from ops import testing

from actions import bundles, push
from actions.bundles import BundleError, read_bundle, read_package, unpacked
from actions.push import InvalidPushError, plan_copies
from charm_context import unit_state
from support import oci, skopeo

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


def dir_image(layout: Path, ref: str, target: Path) -> Path:
    """A skopeo `dir:` folder of one image of the layout, written by skopeo itself."""
    target.parent.mkdir(parents=True, exist_ok=True)
    skopeo.copy(oci.layout_ref(layout, ref), f"dir:{target}")
    return target


def tar_folder(folder: Path, path: Path, compression: str = "") -> Path:
    """`tar -C parent folder` (names start with the folder's), as operators pack folders."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(folder, arcname=folder.name)
    path.write_bytes(oci.compress(buf.getvalue(), compression))
    return path


@pytest.fixture
def package(layout, tmp_path) -> tuple[Path, dict[str, str]]:
    """A package folder as bmctl's: per-image archives of every kind at two depths.

    A docker save archive, a gzip OCI archive (only a tag: its file names it),
    an OCI layout folder and a skopeo `dir:` folder; name -> digest.
    """
    path, digests = layout
    folder = tmp_path / "bmpackages_1.0"
    (folder / "images" / "core").mkdir(parents=True)
    oci.write_docker_save(path, folder / "images" / "saved.tar", {"v1": ["quay.io/team/web:2"]})
    only_v3 = tmp_path / "only-v3"
    shutil.copytree(path, only_v3)
    index = json.loads((only_v3 / "index.json").read_text())
    index["manifests"] = [
        m for m in index["manifests"] if m["annotations"][oci.REF_NAME_ANNOTATION] == "v3"
    ]
    (only_v3 / "index.json").write_text(json.dumps(index))
    oci.write_archive(only_v3, folder / "images" / "core" / "pause.tgz", compression="gzip")
    tool = tmp_path / "tool-layout"
    oci.build_image(tool, "registry.k8s.io/tool:v2", files={"tool": b"tool"})
    shutil.copytree(tool, folder / "images" / "core" / "tool-layout")
    dir_image(path, "v1", folder / "images" / "app:v1")
    (folder / "README").write_text("not an image")
    backup = tmp_path / "etc"
    (backup / "etc").mkdir(parents=True)
    (backup / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    oci.write_archive(backup, folder / "images" / "etc-backup.tar.gz", compression="gzip")
    expected = {
        "quay.io/team/web:2": "",  # docker save: skopeo makes the digest
        "v3": digests["v3"],
        "registry.k8s.io/tool:v2": oci.sha256_digest(
            oci.read_blob(
                tool, json.loads((tool / "index.json").read_text())["manifests"][0]["digest"]
            )
        ),
        "images/app:v1": digests["v1"],  # its path in the package
    }
    return folder, expected


def listed(bundles) -> dict[str, str]:
    return {image.name: image.digest for bundle in bundles for image in bundle.images}


@pytest.mark.parametrize("compression", ["", "xz"])
def test_a_tarball_of_a_folder_of_image_archives_lists_each_image(package, tmp_path, compression):
    folder, expected = package
    tarball = tar_folder(folder, tmp_path / "bmpackages_1.0.tar.xz", compression)

    inside = read_package(tarball)
    in_folder = read_package(folder)

    assert listed(inside) == listed(in_folder) == expected
    assert sorted(b.member_kind for b in inside) == ["archive", "archive", "folder", "folder"]
    assert [b.last_member for b in inside] == sorted(b.last_member for b in inside), "tar order"
    assert {b.format for b in inside} == {"docker", "oci", "dir"}
    copies = plan_copies(str(tarball), namespace="test-namespace")
    assert sorted((c.destination, c.error) for c in copies) == [
        ("test-namespace/images/app:v1", ""),
        ("test-namespace/pause:v3", ""),
        ("test-namespace/team/web:2", ""),
        ("test-namespace/tool:v2", ""),
    ]


def test_skopeo_dir_folders_are_named_by_their_path_after_the_host(layout, tmp_path):
    path, digests = layout
    scoped = tmp_path / "sync"
    dir_image(path, "v1", scoped / "127.0.0.1:5000" / "team" / "app:v1")
    dir_image(path, "v3", scoped / "127.0.0.1:5000" / "app:v3")
    plain = tmp_path / "plain"
    dir_image(path, "v1", plain / "app:v1")

    assert listed(read_package(scoped)) == {
        "127.0.0.1:5000/team/app:v1": digests["v1"],
        "127.0.0.1:5000/app:v3": digests["v3"],
    }
    assert listed(read_package(tar_folder(scoped, tmp_path / "s.tar.gz", "gzip"))) == {
        "127.0.0.1:5000/team/app:v1": digests["v1"],
        "127.0.0.1:5000/app:v3": digests["v3"],
    }
    # tar -C plain . and tar of the folder: the same names.
    assert listed(read_package(oci.write_archive(plain, tmp_path / "p.tar"))) == {
        "app:v1": digests["v1"]
    }
    assert listed(read_package(tar_folder(plain, tmp_path / "q.tar"))) == {"app:v1": digests["v1"]}
    assert listed(read_package(plain / "app:v1")) == {"app:v1": digests["v1"]}
    assert [c.destination for c in plan_copies(str(scoped))] == ["app:v3", "team/app:v1"]


def test_an_oci_layout_in_one_top_level_folder_lists_as_the_layout(layout, tmp_path):
    path, _ = layout
    tarball = tar_folder(path, tmp_path / "images.tar.zst", "zstd")
    (bundle,) = read_package(tarball)
    assert (bundle.member, bundle.format) == ("layout", "oci")
    assert listed([bundle]) == listed([read_bundle(path)])
    assert [c.destination for c in plan_copies(str(tarball))] == [
        "team/app:v1",
        "team/tool:v2",
        "layout:v3",
    ]


def test_a_package_writes_out_each_bundle_alone_and_removes_it(package, tmp_path):
    folder, _ = package
    tarball = tar_folder(folder, tmp_path / "pkg.tar.xz", "xz")
    inside = list(read_package(tarball))
    work = tmp_path / "work"
    work.mkdir()
    logged: list[str] = []
    stream = bundles.PackageStream(tarball, inside, work, logged.append)
    try:
        written = []
        for bundle in inside:
            local = stream.extract(bundle).path
            assert len(list(work.iterdir())) == 1, "one bundle on disk at a time"
            if bundle.format == "dir":
                assert sorted(p.name for p in local.iterdir()) == sorted(
                    p.name for p in (folder / "images" / "app:v1").iterdir()
                )
            else:
                assert read_bundle(local).images == bundle.images
            written.append(local.name)
            stream.release(bundle)
        assert list(work.iterdir()) == []
    finally:
        stream.close()
    assert sorted(written) == ["bundle.tar", "dir", "layout", "layout"]
    assert [line.split(" (")[0] for line in logged] == [f"unpacking {b.label}" for b in inside]


def test_a_folder_without_images_says_so(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(BundleError, match="holds no image archive, OCI layout or skopeo dir"):
        read_package(tmp_path / "empty")


def test_a_bundle_whose_images_are_there_is_never_written_out(package, tmp_path):
    """A package pushed again: the stream passes the bundles it need not unpack."""
    folder, _ = package
    tarball = tar_folder(folder, tmp_path / "pkg.tar.xz", "xz")
    copies = plan_copies(str(tarball))
    last = max(copies, key=lambda c: c.bundle.last_member if c.bundle else -1)
    assert last.bundle is not None
    work = tmp_path / "work"
    work.mkdir()
    logged: list[str] = []
    sources = push._BundleSources(copies, str(work), logged.append)
    try:
        for copy in copies:
            if copy is not last:
                sources.release(copy)  # as push does for an image already there
        resolved = sources.resolve(last)
        assert resolved.error == ""
        written = sources.streams[tarball].folders
        assert list(written) == [last.bundle.member], "only the bundle being pushed"
        sources.release(last)
        assert list(work.iterdir()) == []
    finally:
        sources.close()
    assert len(logged) == 1


def _read_within(deadline: float, path: Path, unblock: Path | None = None):
    """read_package(path) in a thread: its result or error, or None if still reading."""
    outcome: list = []

    def read() -> None:
        try:
            outcome.append(read_package(path))
        except BundleError as e:
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(deadline)
    if reader.is_alive() and unblock is not None:
        # Release a reader blocked on the pipe so the test process is left clean.
        with open(unblock, "wb"):
            pass
        reader.join(deadline)
        return None
    return outcome[0] if outcome else None


def test_a_pipe_a_device_or_an_empty_file_is_refused_without_reading(tmp_path):
    """A FIFO or /proc/kmsg would block the action forever; no archive is empty."""
    fifo = tmp_path / "images.tar"
    os.mkfifo(fifo)
    empty = tmp_path / "empty.tar"
    empty.touch()

    refused = _read_within(10, fifo, unblock=fifo)
    assert str(refused) == f"{fifo} is neither a regular file nor a folder"
    assert str(_read_within(10, Path("/dev/zero"))) == (
        "/dev/zero is neither a regular file nor a folder"
    )
    assert str(_read_within(10, empty)) == f"{empty} is empty"
    with pytest.raises(BundleError, match="is neither a regular file nor a folder"):
        read_bundle(fifo, "oci-archive")


def test_a_folder_package_skips_pipes_and_empty_files(package, tmp_path):
    folder, expected = package
    os.mkfifo(folder / "images" / "a-pipe")
    (folder / "images" / "core" / "empty.tar").touch()

    bundles = _read_within(30, folder, unblock=folder / "images" / "a-pipe")

    assert bundles is not None
    assert not isinstance(bundles, BundleError)
    assert listed(bundles) == expected


def test_the_root_folder_is_refused_without_entering_other_file_systems():
    """`push image=/` once walked into /proc and blocked reading /proc/kmsg."""
    refused = _read_within(120, Path("/"))

    assert isinstance(refused, BundleError), refused
    assert "files outside image folders" in str(refused) or "holds no image" in str(refused)


def test_a_folder_with_more_files_than_a_package_holds_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bundles, "FOLDER_FILES_LIMIT", 3)
    for name in "abcd":
        (tmp_path / name).write_text("not an image")

    with pytest.raises(BundleError, match="holds more than 3 files outside image folders"):
        read_package(tmp_path)
