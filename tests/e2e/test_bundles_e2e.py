"""Image bundles pushed whole: every image under its own name and digest, pulled back.

Bundles are built the ways operators get them: an OCI archive of several
images (one multi-arch) compressed with xz, a `ctr images export` archive
from a real containerd (zstd), a `docker save` archive with several tags
(gzip). The charm's push runs (Scenario + LocalMachine) against its real
registry; containerd pulls each image back and its digest must be the source's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

from actions import bundles, push, resource_import
from charm_context import images_resource, unit_state
from support import oci, skopeo
from support.containerd import Containerd
from support.node import pull_plain
from support.registry import RegistryProcess

pytestmark = pytest.mark.e2e

NAMES = ("bundle.test/team/app:v1", "bundle.test/team/tool:v2")
MULTI = "bundle.test/base/multi:3"


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Two images named by full ref names and a two-platform index; name -> digest."""
    path = tmp_path_factory.mktemp("bundle") / "layout"
    base = oci.make_layer(oci.random_layer(64 * 1024, "bundle-base"))
    digests = {
        name: oci.build_image(path, name, layers=[base, oci.random_layer(16 * 1024, name)])
        for name in NAMES
    }
    for arch in ("amd64", "arm64"):
        oci.build_image(path, arch, files={"arch": arch.encode()}, architecture=arch)
    digests[MULTI] = oci.build_index(path, MULTI, ["amd64", "arm64"])
    return path, digests


def pushed(ctx) -> dict[str, str]:
    assert ctx.action_results["outcome"] == "success", ctx.action_results
    return {i["destination"]: i["digest"] for i in ctx.action_results["images"].values()}


def test_a_multi_image_xz_bundle_pushes_in_one_action(ctx, port, layout, containerd, tmp_path):
    path, digests = layout
    carried = tmp_path / "carried"
    carried.mkdir()
    bundle = oci.write_archive(path, carried / "bundle.tar.xz", compression="xz")
    state = ctx.run(ctx.on.install(), unit_state(port))
    netloc = f"127.0.0.1:{port}"

    ctx.run(ctx.on.action("bundle-images", params={"path": str(bundle)}), state)
    listed = {i["name"]: i["digest"] for i in ctx.action_results["images"].values()}
    assert listed == digests

    ctx.run(
        ctx.on.action("push", params={"image": str(bundle), "namespace": "test-namespace"}), state
    )

    expected = {
        f"{netloc}/test-namespace/{name.split('/', 1)[1]}": digest
        for name, digest in digests.items()
    }
    assert pushed(ctx) == expected
    assert any(line.startswith(f"unpacking {bundle}") for line in ctx.action_logs)
    assert sorted(p.name for p in carried.iterdir()) == ["bundle.tar.xz"], "cleaned up"
    for ref, digest in expected.items():
        assert pull_plain(containerd, tmp_path / "certs.d", ref) == digest
    index = skopeo.inspect_raw(f"docker://{netloc}/test-namespace/base/multi:3", tls_verify=False)
    platforms = [m["platform"]["architecture"] for m in json.loads(index)["manifests"]]
    assert platforms == ["amd64", "arm64"], "the index, every platform with it"


@contextlib.contextmanager
def imported(containerd: Containerd, archive: Path, names: list[str]) -> Iterator[None]:
    containerd.ctr("images", "import", "--all-platforms", str(archive))
    try:
        yield
    finally:
        for name in names:
            containerd.ctr("images", "rm", name)


def test_a_ctr_export_archive_pushes_every_image(ctx, port, layout, containerd, tmp_path):
    """`ctr export` names each image twice: its full name, and the tag alone."""
    path, digests = layout
    archive = oci.write_archive(path, tmp_path / "source.tar")
    exported = tmp_path / "export.tar"
    partial = tmp_path / "partial.tar"
    with imported(containerd, archive, [*NAMES, MULTI]):
        containerd.ctr("images", "export", "--all-platforms", str(exported), *NAMES, MULTI)
        containerd.ctr("images", "export", "--platform", "linux/amd64", str(partial), MULTI)
    compressed = tmp_path / "export.tar.zst"
    compressed.write_bytes(oci.compress(exported.read_bytes(), "zstd"))
    state = ctx.run(ctx.on.install(), unit_state(port))
    netloc = f"127.0.0.1:{port}"

    ctx.run(ctx.on.action("push", params={"image": str(compressed)}), state)
    whole = {f"{netloc}/{name.split('/', 1)[1]}": digest for name, digest in digests.items()}
    assert pushed(ctx) == whole

    # A partial export holds the index but only the amd64 image: that one is pushed.
    ctx.run(ctx.on.action("push", params={"image": str(partial), "namespace": "p"}), state)
    amd64 = json.loads(oci.read_blob(path, digests[MULTI]))["manifests"][0]["digest"]
    assert pushed(ctx) == {f"{netloc}/p/base/multi:3": amd64}


def test_a_docker_save_archive_with_several_tags_pushes_each(
    ctx, port, layout, containerd, tmp_path
):
    path, _ = layout
    saved = oci.write_docker_save(
        path, tmp_path / "saved.tar", {NAMES[0]: ["nginx:1.25", "quay.io/team/web:2"]}
    )
    gzipped = tmp_path / "saved.tar.gz"
    gzipped.write_bytes(oci.compress(saved.read_bytes(), "gzip"))
    state = ctx.run(ctx.on.install(), unit_state(port))
    netloc = f"127.0.0.1:{port}"
    source_digest = skopeo.inspect_digest(f"docker-archive:{saved}:@0")

    ctx.run(ctx.on.action("push", params={"image": f"docker-archive:{gzipped}"}), state)

    assert pushed(ctx) == {
        f"{netloc}/nginx:1.25": source_digest,
        f"{netloc}/team/web:2": source_digest,
    }
    assert pull_plain(containerd, tmp_path / "certs.d", f"{netloc}/team/web:2") == source_digest


# Peak memory from VmHWM: ru_maxrss would carry the test process's over from the fork.
PEAK_MEMORY = """
import re, sys
from pathlib import Path
from actions.bundles import PackageStream, read_bundle, read_package, unpacked
path, work = Path(sys.argv[1]), Path(sys.argv[2])
bundles = read_package(path)
stream = PackageStream(path, [b for b in bundles if b.member], work, print)
for bundle in bundles:
    local = stream.extract(bundle) if bundle.member else bundle
    with unpacked(local, work, print) as source:
        refs = [source(image) for image in bundle.images]
    if bundle.member:
        stream.release(bundle)
stream.close()
status = Path("/proc/self/status").read_text()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024)
"""


@pytest.mark.parametrize("inside_a_package", [False, True])
def test_a_bundle_larger_than_the_memory_it_may_take_lists_and_unpacks(tmp_path, inside_a_package):
    """Listing and unpacking stream, also through a package: memory stays far below the size."""
    layout = tmp_path / "big"
    layers = [
        oci.make_layer(oci.random_layer(40 << 20, f"big-{i}"), compresslevel=1) for i in range(3)
    ]
    oci.build_image(layout, "v1", layers=layers)
    bundle = oci.write_archive(layout, tmp_path / "big.tar.zst", compression="zstd")
    del layers
    assert bundle.stat().st_size > 120 << 20
    if inside_a_package:  # seed 002/004's shape: a tarball of a folder holding the archive
        package = tmp_path / "package.tar"
        with tarfile.open(package, "w") as tar:
            tar.add(bundle, arcname="bmpackages/images/big.tar.zst")
        bundle.unlink()
        bundle = package
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, str(bundle), str(work)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )
    peak = int(done.stdout.splitlines()[-1])
    print(
        f"peak memory {peak >> 20} MiB for a 120 MiB bundle (inside a package: {inside_a_package})"
    )
    assert peak < 64 << 20, f"peak memory {peak >> 20} MiB for a 120 MiB bundle"
    assert list(work.iterdir()) == []


def package_folder(root: Path, count: int) -> tuple[Path, dict[str, str]]:
    """Seed 002/004's shape: a folder of per-image archives (OCI or docker save), name -> digest.

    The docker save archives' digests are skopeo's own, read from the archive.
    """
    folder = root / "bmpackages_1.0"
    (folder / "images").mkdir(parents=True)
    base = oci.make_layer(oci.random_layer(8 * 1024, "package-base"))
    digests = {}
    for number in range(count):
        name = f"gcr.io/anthos-baremetal-release/image-{number}:1.{number}"
        layout = root / "layouts" / str(number)
        oci.build_image(layout, "image", layers=[base, oci.random_layer(4 * 1024, name)])
        if number % 2:
            archive = oci.write_docker_save(
                layout, folder / "images" / f"{number}.tar", {"image": [name]}
            )
            digests[name] = skopeo.inspect_digest(f"docker-archive:{archive}:@0")
        else:
            oci.annotate(layout, "image", {bundles.CONTAINERD_NAME: name})
            oci.write_archive(layout, folder / "images" / f"{number}.tar.gz", compression="gzip")
            digests[name] = json.loads((layout / "index.json").read_text())["manifests"][0][
                "digest"
            ]
    return folder, digests


def registry_digests(netloc: str, names: list[str]) -> dict[str, str]:
    return {
        name: skopeo.inspect_digest(f"docker://{netloc}/{name}", tls_verify=False)
        for name in names
    }


PER_IMAGE = re.compile(
    r"^\[(\d+)/(\d+)\] \S+ \((\S+)\) -> \S+ sha256:[0-9a-f]{64}"
    r" \([\d.]+ KiB in [\d.]+ s, [\d.]+ \w+/s\)$"
)


def test_a_tar_xz_of_a_folder_of_image_archives_pushes_whole_logging_each_image(
    ctx, port, tmp_path, monkeypatch
):
    """Seed 002/004's package of 40 small images: each pushed and logged, a bundle at a time."""
    folder, digests = package_folder(tmp_path / "build", 40)
    carried = tmp_path / "carried"
    carried.mkdir()
    package = carried / "bmpackages_1.0.tar.xz"
    with tarfile.open(package, "w:xz") as tar:
        tar.add(folder, arcname=folder.name)
    state = ctx.run(ctx.on.install(), unit_state(port))
    netloc = f"127.0.0.1:{port}"
    # Peak temporary disk: measured each time a bundle has just been written out.
    peaks: list[int] = []
    extract = bundles.PackageStream.extract

    def measured(stream, bundle):
        local = extract(stream, bundle)
        peaks.append(sum(f.stat().st_size for f in carried.rglob("*") if f.is_file()))
        return local

    monkeypatch.setattr(bundles.PackageStream, "extract", measured)
    ctx.run(
        ctx.on.action(
            "bundle-images", params={"path": str(package), "namespace": "test-namespace"}
        ),
        state,
    )
    listed = {i["name"]: i["digest"] for i in ctx.action_results["images"].values()}
    assert listed == {name: "" if n % 2 else d for n, (name, d) in enumerate(digests.items())}
    assert ctx.action_results["temp-disk"].startswith(f"{package}: 40 bundles inside, the largest")

    ctx.run(
        ctx.on.action("push", params={"image": str(package), "namespace": "test-namespace"}),
        state,
    )

    expected = {
        f"{netloc}/test-namespace/{name.split('/', 1)[1]}": digest
        for name, digest in digests.items()
    }
    assert pushed(ctx) == expected
    lines = [line for line in ctx.action_logs if line.startswith("[")]
    assert len(lines) == 40
    matches = [PER_IMAGE.match(line) for line in lines]
    assert [int(m.group(1)) if m else line for m, line in zip(matches, lines, strict=True)] == (
        list(range(1, 41))
    )
    assert sorted(p.name for p in carried.iterdir()) == [package.name], "cleaned up"
    unpacked_size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    largest = max(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    peak = max(peaks) - package.stat().st_size
    print(f"peak temporary disk {peak} bytes; package unpacked {unpacked_size}, largest {largest}")
    assert peak < unpacked_size / 3, "a few bundles at a time, not the package"

    # The folder it came from: the same images, the same digests, nothing left behind.
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    ctx.run(
        ctx.on.action("push", params={"image": str(folder), "namespace": "test-namespace"}),
        state,
    )
    assert pushed(ctx) == expected
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


@pytest.fixture(scope="module")
def synced(layout) -> Iterator[tuple[str, dict[str, str]]]:
    """Images in a source registry on loopback for `skopeo sync`: its netloc, name -> digest."""
    path, digests = layout
    with RegistryProcess() as source:
        names = {"team/app:v1": NAMES[0], "tool:v2": NAMES[1], "base/multi:3": MULTI}
        for name, ref in names.items():
            skopeo.copy(
                oci.layout_ref(path, ref),
                f"docker://{source.netloc}/{name}",
                dest_tls_verify=False,
                all_images=True,
            )
        yield source.netloc, {name: digests[ref] for name, ref in names.items()}


def skopeo_sync(netloc: str, repository: str, dest: Path, *, scoped: bool) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    policy = dest.parent / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    subprocess.run(
        [
            "skopeo",
            "--policy",
            str(policy),
            "sync",
            "--all",
            "--src",
            "docker",
            "--dest",
            "dir",
            "--src-tls-verify=false",
            *(["--scoped"] if scoped else []),
            f"{netloc}/{repository}",
            str(dest),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.parametrize("scoped", [False, True])
def test_skopeo_sync_output_pushes_as_a_folder_and_as_a_tarball(
    ctx, port, synced, tmp_path, scoped, monkeypatch
):
    """`skopeo sync --dest dir` output, as it is and tarred; the status shows the progress."""
    netloc, digests = synced
    sync = tmp_path / "sync"
    for repository in ("team/app", "tool", "base/multi"):
        skopeo_sync(netloc, repository, sync, scoped=scoped)
    tarball = tmp_path / "sync.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(sync, arcname="sync")
    state = ctx.run(ctx.on.install(), unit_state(port))
    own = f"127.0.0.1:{port}"
    # Without --scoped skopeo keeps only the last part of a repository's path.
    names = {name if scoped else name.rpartition("/")[2]: d for name, d in digests.items()}

    monkeypatch.setattr(push, "STATUS_AFTER", 0)
    monkeypatch.setattr(push, "STATUS_EVERY", 0)
    ctx.run(ctx.on.action("push", params={"image": str(sync), "namespace": "f"}), state)
    assert pushed(ctx) == {f"{own}/f/{name}": digest for name, digest in names.items()}
    assert [s.message for s in ctx.unit_status_history[-3:]] == [
        f"Pushing images {n}/3" for n in (1, 2, 3)
    ]
    ctx.run(ctx.on.action("push", params={"image": str(tarball), "namespace": "t"}), state)
    assert pushed(ctx) == {f"{own}/t/{name}": digest for name, digest in names.items()}
    assert registry_digests(own, ["t/" + next(n for n in names if "multi" in n)]) == {
        "t/" + next(n for n in names if "multi" in n): digests["base/multi:3"]
    }, "the index whole"


def test_the_images_resource_is_imported_in_the_background_once(ctx, machine, port, tmp_path):
    """Attach a package: a job imports it, progress and result in the status; again: nothing."""
    folder, digests = package_folder(tmp_path / "build", 6)
    package = tmp_path / "resource" / "images.tar"
    package.parent.mkdir()
    with tarfile.open(package, "w:xz") as tar:
        tar.add(folder, arcname=folder.name)
    state = ctx.run(ctx.on.install(), unit_state(port, config={"images-namespace": "site"}))
    netloc = f"127.0.0.1:{port}"

    state = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(state, resources={images_resource(package)})
    )
    assert machine.launches[resource_import.JOB] == 1
    assert machine.wait(resource_import.JOB, timeout=120) == 0, machine.log(resource_import.JOB)
    state = ctx.run(ctx.on.update_status(), state)

    digest = resource_import.file_digest(package)
    assert state.unit_status == testing.ActiveStatus(
        f"Ready at {netloc} (http). Imported 6 images from the images resource ({digest[:19]})."
    )
    names = [f"site/{name.split('/', 1)[1]}" for name in digests]
    assert registry_digests(netloc, names) == dict(zip(names, digests.values(), strict=True))
    log = machine.log(resource_import.JOB).splitlines()
    assert [line.split("]")[0] for line in log if line.startswith("[")] == [
        f"[{n}/6" for n in range(1, 7)
    ]
    work = machine.root / resource_import.STATE_DIR / "work"
    assert list(work.iterdir()) == [], "unpacked in the charm's folder, then removed"
    assert sorted(p.name for p in package.parent.iterdir()) == ["images.tar"], "Juju's untouched"

    # The same file attached again (Juju gives it a new revision): nothing starts.
    again = tmp_path / "again" / "images.tar"
    again.parent.mkdir()
    again.write_bytes(package.read_bytes())
    state = ctx.run(
        ctx.on.upgrade_charm(), dataclasses.replace(state, resources={images_resource(again)})
    )
    assert machine.launches[resource_import.JOB] == 1

    # A package holding them and one more: only the new one is copied.
    extra_folder, extra = package_folder(tmp_path / "extra", 7)
    bigger = tmp_path / "bigger" / "images.tar"
    bigger.parent.mkdir()
    with tarfile.open(bigger, "w:gz") as tar:
        tar.add(extra_folder, arcname=extra_folder.name)
    ctx.run(
        ctx.on.config_changed(), dataclasses.replace(state, resources={images_resource(bigger)})
    )
    assert machine.wait(resource_import.JOB, timeout=120) == 0
    log = machine.log(resource_import.JOB)
    oci_images = [name for number, name in enumerate(digests) if number % 2 == 0]
    assert log.count("(already there)") == len(oci_images), "bundled OCI digests are known"
    new = "gcr.io/anthos-baremetal-release/image-6:1.6"
    assert registry_digests(netloc, [f"site/{new.split('/', 1)[1]}"]) == {
        f"site/{new.split('/', 1)[1]}": extra[new]
    }
