"""A unit deployed with `--storage data=...` and `cache-mirrors` set from the start."""

from __future__ import annotations

import pytest

from machine_unit import (
    MIRRORS,
    REGISTRY,
    SERVICE_USER,
    UPSTREAM_APP,
    Unit,
    skopeo_digest,
    start_upstream,
)

OLD_REPOSITORY = "/srv/registry/docker/registry/v2/repositories/old"
DISK = "/var/lib/image-disk"


@pytest.fixture(scope="module")
def unit(new_unit) -> Unit:
    """Juju mounts the storage and fires storage-attached before install."""
    unit = new_unit()
    machine = unit.machine
    # A disk of its own: a bind mount stands in (no block devices in the container).
    machine.run(["mkdir", "-p", DISK, "/srv/registry"])
    machine.run(["mount", "--bind", DISK, "/srv/registry"])
    # Data another unit left on the disk, as root.
    machine.run(["mkdir", "-p", OLD_REPOSITORY])
    assert unit.storage("storage_attached")["status"] != "error"
    start_upstream(unit)
    unit.event("install", cache_mirrors=MIRRORS, storage_delete=True)
    return unit


def test_cache_mirrors_on_a_fresh_unit(unit: Unit, images):
    # Before the fix: Blocked, "listen unix /run/docker-registry/registry.sock:
    # bind: no such file or directory" (haproxy's install came after the restart).
    assert unit.answers["install"] == {
        "status": "active",
        "message": f"Ready at {REGISTRY} (http).",
    }
    machine = unit.machine
    for service in ("docker-registry", "haproxy", "docker-registry-mirror@upstream.test"):
        assert machine.active(service), service
    # The package's postinst started neither the registry nor haproxy.
    assert unit.starts("docker-registry") == 1
    assert unit.starts("haproxy") == 1
    layout = unit.push_layout(images["app0"][0], "app0")
    machine.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", UPSTREAM_APP])
    mirrored = f"{REGISTRY}/upstream.test/team/app:v1"
    assert skopeo_digest(machine, mirrored, creds=None, tls=False) == images["app0"][1]


def test_images_live_on_the_attached_storage(unit: Unit, images):
    machine = unit.machine
    assert machine.run(["mountpoint", "-q", "/srv/registry"], check=False).returncode == 0
    assert machine.stat("/srv/registry")[:2] == (SERVICE_USER, SERVICE_USER)
    assert machine.stat(OLD_REPOSITORY)[:2] == (SERVICE_USER, SERVICE_USER)
    layout = unit.push_layout(images["app1"][0], "app1")
    assert "failure" not in unit.action("push", image=f"oci:{layout}:v1")
    assert machine.exists("/srv/registry/docker/registry/v2/repositories/app1")
    assert machine.exists("/srv/registry/mirrors/upstream.test/docker/registry/v2/repositories")
    foreign = machine.run(["find", "/srv/registry", "-not", "-user", SERVICE_USER]).stdout
    assert foreign == ""


def test_detaching_the_storage_stops_the_registry_and_keeps_the_images(unit: Unit):
    answer = unit.storage("storage_detaching")
    assert answer["status"] == "maintenance", answer
    machine = unit.machine
    assert not machine.active("docker-registry")
    machine.run(["umount", "/srv/registry"])  # as Juju does next
    assert machine.exists(f"{DISK}/docker/registry/v2/repositories/app1")
    assert machine.exists(f"{DISK}/mirrors/upstream.test/docker")
