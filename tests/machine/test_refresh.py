"""`juju refresh` from the established charm keeps serving every image, with mutual TLS.

The established charm ran `registry:2` under Docker as root (see the shared
reference established-charm.md). Here Debian's `docker.io` runs inside the
unit's container, with a `registry:2` image built locally from the Debian
package's registry binary (no registry is pulled from the internet), started
as that charm started it: port 5000 published, `--restart unless-stopped`,
the data folder and the config and TLS files mounted from the host, all
root-owned, an htpasswd with a `$2y$` hash, and `clientcas`.
"""

from __future__ import annotations

import bcrypt
import pytest
import yaml

from charm_context import b64
from machine_unit import (
    CA_DIR,
    CREDS,
    MIRRORS,
    PASSWORD,
    REGISTRY,
    SERVICE_USER,
    UPSTREAM_APP,
    USER,
    Unit,
    skopeo_digest,
    start_upstream,
)
from support import pki

CLIENT_DIR = "/root/client"
"""The CA and a client certificate, as a Charmed Kubernetes node presents it."""
BUILD_IMAGE = """set -e
dpkg-deb -x /var/local/debs/docker-registry_*.deb /tmp/deb
mkdir -p /tmp/image/bin
cp /tmp/deb/usr/bin/docker-registry /tmp/image/bin/registry
# The binary and the shared libraries it links (ldd prints their paths).
for lib in $(ldd /tmp/deb/usr/bin/docker-registry | grep -o '/[^ ]*'); do
  cp --parents "$lib" /tmp/image/
done
printf 'FROM scratch\\nCOPY . /\\nEXPOSE 5000\\nENTRYPOINT ["/bin/registry"]\\n%s\\n' \\
  'CMD ["serve", "/etc/docker/registry/config.yml"]' >/tmp/image/Dockerfile
DOCKER_BUILDKIT=0 docker build --quiet --tag registry:2 /tmp/image
"""
DOCKER_RUN = [
    "docker", "run", "--detach", "--name", "registry", "--restart", "unless-stopped",
    "--publish", "5000:5000", "--volume", "/srv/registry:/var/lib/registry",
    "--volume", "/etc/docker/registry:/etc/docker/registry", "registry:2",
]  # fmt: skip


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
    """What the established charm left on the machine, its registry container serving."""
    machine = unit.machine
    machine.run(["apt-get", "install", "-qq", "--no-install-recommends", "docker.io"])
    machine.run(["sh", "-c", BUILD_IMAGE])
    registry_dir = machine.path("/etc/docker/registry")
    registry_dir.mkdir(parents=True)
    for name, content in (("ca.crt", "ca"), ("registry.crt", "cert"), ("registry.key", "key")):
        (registry_dir / name).write_bytes(pki_files[content])
    (registry_dir / "registry.key").chmod(0o600)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    (registry_dir / "htpasswd").write_text(f"{USER}:{hashed.replace('$2b$', '$2y$', 1)}\n")
    config = {
        "version": 0.1,
        "auth": {"htpasswd": {"realm": "registry", "path": "/etc/docker/registry/htpasswd"}},
        "http": {
            "addr": ":5000",
            "tls": {
                "certificate": "/etc/docker/registry/registry.crt",
                "key": "/etc/docker/registry/registry.key",
                "clientcas": ["/etc/docker/registry/ca.crt"],
            },
        },
        "storage": {"filesystem": {"rootdirectory": "/var/lib/registry"}},
    }
    (registry_dir / "config.yml").write_text(yaml.safe_dump(config))
    (registry_dir / "config.yml").chmod(0o600)
    client = machine.path(CLIENT_DIR)
    client.mkdir(parents=True)
    (client / "ca.crt").write_bytes(pki_files["ca"])
    (client / "client.cert").write_bytes(pki_files["client-cert"])
    (client / "client.key").write_bytes(pki_files["client-key"])
    machine.path(CA_DIR).mkdir(parents=True)
    (machine.path(CA_DIR) / "ca.crt").write_bytes(pki_files["ca"])
    machine.run(DOCKER_RUN)


@pytest.fixture(scope="module")
def refreshed(new_unit, images, pki_files) -> tuple[Unit, dict]:
    """An established unit filled with images, then refreshed to this charm."""
    unit = new_unit(docker=True)
    established_unit(unit, pki_files)
    machine = unit.machine
    # skopeo pushes the images (the established charm would use docker push).
    machine.run(["apt-get", "install", "-qq", "--no-install-recommends", "skopeo"])
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
    assert machine.run(["docker", "ps", "--all", "--quiet"]).stdout == ""
    assert machine.active("docker")  # Docker itself stays
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


def test_mutual_tls_in_front_of_mirrors(refreshed, images):
    unit, _ = refreshed
    machine = unit.machine
    start_upstream(unit)
    machine.run(
        ["skopeo", "copy", "--dest-tls-verify=false", "oci:/root/images/app0:v1", UPSTREAM_APP]
    )
    answer = unit.event("config_changed", cache_mirrors=MIRRORS)
    assert answer["status"] == "active", answer
    mirrored = f"{REGISTRY}/upstream.test/team/app:v1"
    assert skopeo_digest(machine, mirrored, cert_dir=CLIENT_DIR) == images["app0"][1]
    assert skopeo_digest(machine, f"{REGISTRY}/app1:v1", cert_dir=CLIENT_DIR) == images["app1"][1]
    without_client_cert = ["skopeo", "inspect", "--cert-dir", CA_DIR, "--creds", CREDS]
    assert machine.run([*without_client_cert, f"docker://{mirrored}"], check=False).returncode
    assert "failure" not in unit.action("images")
    assert unit.event("config_changed", cache_mirrors="")["status"] == "active"


def test_mutual_tls_is_kept_until_turned_off(refreshed, images):
    unit, _ = refreshed
    machine = unit.machine
    ref = f"{REGISTRY}/app1:v1"
    without_client_cert = ["skopeo", "inspect", "--cert-dir", CA_DIR, "--creds", CREDS]
    refused = machine.run([*without_client_cert, f"docker://{ref}"], check=False)
    assert refused.returncode != 0
    assert "certificate" in refused.stderr
    # The actions present the charm's own client certificate.
    layout = unit.push_layout(images["app0"][0], "again")
    answer = unit.action("push", image=f"oci:{layout}:v1", tag="pushed-after-refresh:v1")
    assert "failure" not in answer, answer
    assert "pushed-after-refresh:v1" in str(unit.action("images")["results"])
    assert unit.machine.stat("/etc/docker/registry/charm-client/client.key")[2] == 0o600
    assert unit.event("config_changed", tls_client_auth="off")["status"] == "active"
    assert skopeo_digest(machine, ref) == images["app1"][1]
    assert not machine.exists("/etc/docker/registry/charm-client")
    assert not machine.exists("/etc/docker/registry/client-cas.pem")


def test_the_container_stays_gone_after_a_reboot(refreshed, images):
    unit, _ = refreshed
    unit.reboot()
    machine = unit.machine
    assert machine.run(["docker", "ps", "--all", "--quiet"]).stdout == ""
    assert machine.active("docker-registry")
    for name, (_, digest) in images.items():
        assert skopeo_digest(machine, f"{REGISTRY}/{name}:v1") == digest
    assert unit.event("update_status")["status"] == "active"
