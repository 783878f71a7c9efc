"""Image bundles pushed whole: every image under its own name and digest, pulled back.

Bundles are built the ways operators get them: an OCI archive of several
images (one multi-arch) compressed with xz, a `ctr images export` archive
from a real containerd (zstd), a `docker save` archive with several tags
(gzip). The charm's push runs (Scenario + LocalMachine) against its real
registry; containerd pulls each image back and its digest must be the source's.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from charm_context import unit_state
from support import oci, skopeo
from support.containerd import Containerd
from support.node import pull_plain

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
from actions.bundles import read_bundle, unpacked
bundle = read_bundle(Path(sys.argv[1]))
with unpacked(bundle, Path(sys.argv[2]), print) as source:
    refs = [source(image) for image in bundle.images]
status = Path("/proc/self/status").read_text()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024)
"""


def test_a_bundle_larger_than_the_memory_it_may_take_lists_and_unpacks(tmp_path):
    """Listing and unpacking stream: memory stays far below the bundle's size."""
    layout = tmp_path / "big"
    layers = [
        oci.make_layer(oci.random_layer(40 << 20, f"big-{i}"), compresslevel=1) for i in range(3)
    ]
    oci.build_image(layout, "v1", layers=layers)
    bundle = oci.write_archive(layout, tmp_path / "big.tar.zst", compression="zstd")
    del layers
    assert bundle.stat().st_size > 120 << 20
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
    assert peak < 64 << 20, f"peak memory {peak >> 20} MiB for a 120 MiB bundle"
    assert list(work.iterdir()) == []
