"""`juju refresh` from the established charm keeps serving every image, with mutual TLS.

The established charm ran `registry:2` under Docker as root (see the shared
reference established-charm.md). Docker does not run inside this test's
systemd-nspawn container (no nested overlay storage or cgroup delegation
for dockerd here), so a process stands in for the container: the registry
binary from the Debian package, unpacked, run as root by a systemd service
with `Restart=always` (as Docker's restart policy would), holding port 5000
with the established charm's files (root-owned data, TLS files, a `$2y$`
htpasswd, `clientcas`), and a `docker` command that answers `inspect` and
`rm --force` for it as the docker CLI would.
"""

from __future__ import annotations

import bcrypt
import pytest
import yaml

from charm_context import b64
from machine_unit import CA_DIR, CREDS, PASSWORD, REGISTRY, SERVICE_USER, USER, Unit, skopeo_digest
from support import pki

CLIENT_DIR = "/root/client"
"""The CA and a client certificate, as a Charmed Kubernetes node presents it."""
FAKE_DOCKER = """#!/bin/sh
# Stands in for the docker CLI: the container "registry" is established-registry.service.
case "$1" in
  inspect)
    [ "$4" = registry ] && systemctl -q is-enabled established-registry \
      && echo registry:2 && exit 0
    echo "Error: No such object: $4" >&2; exit 1 ;;
  rm) [ "$3" = registry ] && systemctl disable --now established-registry ;;
  *) exit 1 ;;
esac
"""


@pytest.fixture(scope="module")
def pki_files() -> dict[str, bytes]:
    ca = pki.make_ca("easyrsa")
    cert, key = pki.issue(ca, "127.0.0.1", ["127.0.0.1", "localhost"])
    client_cert, client_key = pki.issue(ca, "kubernetes-worker", ["worker"])
    return {
        "ca": ca.cert_pem,
        "cert": cert,
        "key": key,
        "client-cert": client_cert,
        "client-key": client_key,
    }


def established_unit(unit: Unit, pki_files: dict[str, bytes]) -> None:
    """What the established charm left on the machine, its registry serving."""
    machine = unit.machine
    deb = "/var/local/debs/docker-registry_*.deb"
    machine.run(["sh", "-c", f"dpkg-deb -x {deb} /opt/established"])
    registry_dir = machine.path("/etc/docker/registry")
    registry_dir.mkdir(parents=True)
    for name, content in (("ca.crt", "ca"), ("registry.crt", "cert"), ("registry.key", "key")):
        (registry_dir / name).write_bytes(pki_files[content])
    (registry_dir / "registry.key").chmod(0o600)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    (registry_dir / "htpasswd").write_text(f"{USER}:{hashed.replace('$2b$', '$2y$', 1)}\n")
    config = {
        "version": 0.1,
        "auth": {
            "htpasswd": {"realm": "docker-registry", "path": "/etc/docker/registry/htpasswd"}
        },
        "http": {
            "addr": ":5000",
            "tls": {
                "certificate": "/etc/docker/registry/registry.crt",
                "key": "/etc/docker/registry/registry.key",
                "clientcas": ["/etc/docker/registry/ca.crt"],
            },
        },
        "storage": {"filesystem": {"rootdirectory": "/srv/registry"}},
    }
    (registry_dir / "config.yml").write_text(yaml.safe_dump(config))
    (registry_dir / "config.yml").chmod(0o600)
    machine.path("/etc/systemd/system/established-registry.service").write_text(
        "[Service]\nExecStart=/opt/established/usr/bin/docker-registry serve"
        " /etc/docker/registry/config.yml\nRestart=always\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    docker = machine.path("/usr/local/bin/docker")
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    client = machine.path(CLIENT_DIR)
    client.mkdir(parents=True)
    (client / "ca.crt").write_bytes(pki_files["ca"])
    (client / "client.cert").write_bytes(pki_files["client-cert"])
    (client / "client.key").write_bytes(pki_files["client-key"])
    machine.path(CA_DIR).mkdir(parents=True)
    (machine.path(CA_DIR) / "ca.crt").write_bytes(pki_files["ca"])
    machine.run(["systemctl", "enable", "--now", "established-registry"])


@pytest.fixture(scope="module")
def refreshed(new_unit, images, pki_files) -> tuple[Unit, dict]:
    """An established unit filled with images, then refreshed to this charm."""
    unit = new_unit()
    established_unit(unit, pki_files)
    machine = unit.machine
    # skopeo pushes the images the old way (it is not part of that unit).
    machine.run(["apt-get", "install", "-qq", "skopeo"])
    for name, (layout, _) in images.items():
        inside = unit.push_layout(layout, name)
        machine.run(
            [
                "skopeo",
                "copy",
                "--retry-times",
                "5",
                "--dest-cert-dir",
                CLIENT_DIR,
                "--dest-creds",
                CREDS,
                f"oci:{inside}:v1",
                f"docker://{REGISTRY}/{name}:v1",
            ]
        )
    assert machine.run(["find", "/srv/registry", "-user", "root"]).stdout
    config = {
        "auth-basic-user": USER,
        "auth-basic-password": PASSWORD,
        "tls-cert-blob": b64(pki_files["cert"]),
        "tls-key-blob": b64(pki_files["key"]),
        "tls-ca-blob": b64(pki_files["ca"]),
    }
    answer = unit.event("upgrade_charm", **config)
    return unit, answer


def test_refresh_takes_over_from_the_container(refreshed):
    unit, answer = refreshed
    assert answer == {"status": "active", "message": f"Ready at {REGISTRY} (https)."}
    machine = unit.machine
    assert not machine.active("established-registry")
    assert not machine.enabled("established-registry")
    assert machine.active("docker-registry")
    assert machine.stat(f"/proc/{unit.main_pid()}")[:2] == (SERVICE_USER, SERVICE_USER)
    assert unit.event("config_changed")["status"] == "active"


def test_every_image_pulls_with_its_old_digest(refreshed, images):
    unit, _ = refreshed
    for name, (_, digest) in images.items():
        assert skopeo_digest(unit.machine, f"{REGISTRY}/{name}:v1", cert_dir=CLIENT_DIR) == digest


def test_data_and_reused_tls_files_belong_to_the_service_user(refreshed, images):
    unit, _ = refreshed
    machine = unit.machine
    assert machine.run(["find", "/srv/registry", "-not", "-user", SERVICE_USER]).stdout == ""
    # The key is byte-identical to the one the established charm wrote.
    assert machine.stat("/etc/docker/registry/registry.key") == (SERVICE_USER, SERVICE_USER, 0o600)


def test_mutual_tls_is_kept_until_turned_off(refreshed, images):
    unit, _ = refreshed
    machine = unit.machine
    ref = f"{REGISTRY}/app1:v1"
    without_client_cert = ["skopeo", "inspect", "--cert-dir", CA_DIR, "--creds", CREDS]
    refused = machine.run([*without_client_cert, f"docker://{ref}"], check=False)
    assert refused.returncode != 0
    assert "certificate" in refused.stderr
    assert unit.event("config_changed", tls_client_auth="off")["status"] == "active"
    assert skopeo_digest(machine, ref) == images["app1"][1]
    # The push action has no client certificate: it works once mutual TLS is off.
    layout = unit.push_layout(images["app0"][0], "again")
    answer = unit.action("push", image=f"oci:{layout}:v1", tag="pushed-after-refresh:v1")
    assert "failure" not in answer, answer
