"""The registry on object storage for real: S3 and Swift from one Swift all-in-one.

The charm's own config renders the registry's storage; the store is
OpenStack Swift from Debian's packages on loopback (tests/support/swift.py),
its s3api middleware serving S3. S3 requests go through a relay that keeps
what the registry sent, so the signature version is read off the wire.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from ops import testing

from charm_context import unit_state
from support import oci, skopeo
from support.swift import REGION, SwiftAllInOne

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, str]:
    layout = tmp_path_factory.mktemp("layout")
    digest = oci.build_image(
        layout, "v1", layers=[{"data/stored.txt": b"in object storage\n"}, oci.random_layer(4096)]
    )
    return layout, digest


def s3_config(swift: SwiftAllInOne, endpoint: str, **options: object) -> dict[str, object]:
    """The charm's S3 options for a new bucket on `swift` reached at `endpoint`."""
    bucket = f"registry-{secrets.token_hex(4)}"
    swift.create_container(bucket)
    return {
        "storage-s3-region": REGION,
        "storage-s3-bucket": bucket,
        "storage-s3-accesskey": swift.username,
        "storage-s3-secretkey": swift.password,
        "storage-s3-regionendpoint": endpoint,
        "storage-s3-forcepathstyle": True,
        **options,
    }


def push_and_pull(image, netloc: str, repo: str, tmp_path: Path) -> None:
    """Push the image, then pull it back whole; its digest must be the source's."""
    layout, digest = image
    skopeo.copy(f"oci:{layout}:v1", f"docker://{netloc}/{repo}", dest_tls_verify=False)
    assert skopeo.inspect_digest(f"docker://{netloc}/{repo}", tls_verify=False) == digest
    pulled = tmp_path / f"pulled-{secrets.token_hex(4)}"
    skopeo.copy(f"docker://{netloc}/{repo}", f"oci:{pulled}:v1", src_tls_verify=False)
    assert oci.layout_ref(pulled, "v1")


@pytest.mark.parametrize(
    ("options", "scheme"),
    [
        ({}, "AWS4-HMAC-SHA256 "),  # the default, as every established deployment signed
        ({"storage-s3-skip-v4-auth": True}, "AWS "),  # signature v2, when asked for
    ],
    ids=["default-v4", "skip-v4-auth"],
)
def test_s3_signature_on_the_wire(
    ctx, machine, port, swift, s3_wire, image, tmp_path, options, scheme
):
    config = s3_config(swift, f"http://{s3_wire.netloc}", **options)
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    ready = testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    assert state.unit_status == ready, machine.log("docker-registry")
    push_and_pull(image, f"127.0.0.1:{port}", "s3/app:v1", tmp_path)
    signatures = s3_wire.authorizations()
    assert signatures
    assert all(value.startswith(scheme) for value in signatures), signatures[:3]
    stored = swift.objects(str(config["storage-s3-bucket"]))
    assert any(name.startswith("docker/registry/v2/repositories/s3/app/") for name in stored)


def test_swift_push_and_pull(ctx, machine, port, swift, image, tmp_path):
    container = f"registry-{secrets.token_hex(4)}"
    config = {
        "storage-swift-authurl": swift.auth_url,
        "storage-swift-username": swift.username,
        "storage-swift-password": swift.password,
        "storage-swift-container": container,
    }
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    ready = testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    assert state.unit_status == ready, machine.log("docker-registry")
    push_and_pull(image, f"127.0.0.1:{port}", "swift/app:v1", tmp_path)
    # The registry created its container and keeps the images there, not on the unit.
    stored = swift.objects(container)
    assert any(
        name.startswith("files/docker/registry/v2/repositories/swift/app/") for name in stored
    )
    assert not (machine.root / "srv/registry/docker").exists()
