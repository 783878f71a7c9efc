"""The images resource on a booted unit: imported by a transient systemd unit, once.

The real `systemd-run` starts the job with the packed charm's interpreter;
the status shows its result; the same file attached again starts nothing.
"""

from __future__ import annotations

import tarfile

from machine_unit import Unit, skopeo_digest
from support import oci
from support.wait import wait_for

JOB = "docker-registry-import"
REGISTRY = "127.0.0.1:5000"


def test_an_attached_bundle_is_imported_in_the_background(new_unit, tmp_path):
    unit: Unit = new_unit()
    assert unit.event("install")["status"] == "active"
    folder = tmp_path / "bmpackages"
    (folder / "images").mkdir(parents=True)
    digests = {}
    for number in range(3):
        name = f"gcr.io/team/image-{number}:1"
        layout = tmp_path / "layouts" / str(number)
        digests[name] = oci.build_image(layout, "image", files={"n": str(number).encode()})
        oci.annotate(layout, "image", {"io.containerd.image.name": name})
        oci.write_archive(layout, folder / "images" / f"{number}.tar", compression="gzip")
    resource = unit.machine.path("/var/lib/juju/resources/images/images.tar")
    resource.parent.mkdir(parents=True)
    with tarfile.open(resource, "w:xz") as tar:
        tar.add(folder, arcname=folder.name)

    unit.attach_images("/var/lib/juju/resources/images/images.tar")
    wait_for(
        lambda: not unit.machine.active(JOB), timeout=180, interval=1, what=f"{JOB} to finish"
    )
    answer = unit.event("update_status")

    assert answer["status"] == "active", answer
    assert "Imported 3 images from the images resource" in answer["message"], answer
    for name, digest in digests.items():
        ref = f"{REGISTRY}/{name.split('/', 1)[1]}"
        assert skopeo_digest(unit.machine, ref, creds=None, tls=False) == digest
    journal = unit.machine.run(["journalctl", "--no-pager", "-o", "cat", "-u", JOB]).stdout
    assert journal.count(" -> ") == 3, journal
    assert not unit.machine.exists("/var/lib/charm-docker-registry/import/spec.json")

    unit.attach_images("/var/lib/juju/resources/images/images.tar")
    assert not unit.machine.active(JOB)
    assert unit.starts(JOB) == 1, "the same content: no second import"
