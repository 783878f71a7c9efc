"""A full disk says so: in the push action's result and in the unit's status."""

from __future__ import annotations

import shutil

import pytest
from ops import testing

from charm_context import unit_state
from support import oci
from support.wait import free_port, wait_for

pytestmark = pytest.mark.e2e


def test_a_push_refused_for_lack_of_space_says_so(ctx, port, small_disk, tmp_path):
    layout = tmp_path / "layout"
    oci.build_image(
        layout,
        "v1",
        layers=[oci.make_layer(oci.random_layer(40 << 20, "too-big"), compresslevel=0)],
    )
    state = ctx.run(ctx.on.install(), unit_state(port))
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(
            ctx.on.action("push", params={"image": f"oci:{layout}:v1", "tag": "big:v1"}), state
        )
    assert failed.value.message.startswith(
        f"The registry's storage is full ({small_disk} 100% used, 0 MB free); "
        "free space with the rmi and garbage-collect actions. 1 of 1 images failed: "
    )
    assert ctx.action_results is not None
    assert ctx.action_results["storage"] == f"full: {small_disk} 100% used, 0 MB free"
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == testing.BlockedStatus(
        f"Storage full, pushes fail: {small_disk} 100% used, 0 MB free; "
        "free space with the rmi and garbage-collect actions"
    )
    # What filled it is the partial upload, which upload purging removes in
    # time (emulated here); Distribution 2.8 keeps the failed upload's files
    # open, so the space comes back when the registry restarts.
    uploads = small_disk / "docker/registry/v2/repositories/big/_uploads"
    assert any(uploads.iterdir())
    shutil.rmtree(uploads)
    state = ctx.run(ctx.on.update_status(), state)
    assert isinstance(state.unit_status, testing.BlockedStatus)
    state = ctx.run(ctx.on.action("stop"), state)
    state = ctx.run(ctx.on.action("start"), state)
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")


def test_a_storage_driver_failing_its_health_check_shows(ctx, port, monkeypatch):
    """S3 at a dead loopback port: after 3 failed checks, 10 s apart, the registry says 503."""
    # The AWS SDK in the registry refuses to start with a custom CA bundle here.
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    config = {
        "storage-s3-region": "us-east-1",
        "storage-s3-bucket": "images",
        "storage-s3-accesskey": "key",
        "storage-s3-secretkey": "secret",
        "storage-s3-regionendpoint": f"http://127.0.0.1:{free_port()}",
        "storage-s3-secure": False,
    }
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    failing = testing.BlockedStatus(
        "Registry storage fails its health check; see journalctl -u docker-registry"
    )
    wait_for(
        lambda: ctx.run(ctx.on.update_status(), state).unit_status == failing,
        timeout=90,
        interval=2,
        what="the storage health check to fail",
    )
