"""One unit through its life: install, TLS and auth, pushes, mirrors, reboot, actions, stop.

The tests run in file order on one unit (a machine tier test costs a boot
and an apt install); each says what it starts from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from charm_context import tls_config
from machine_unit import (
    CA_DIR,
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
from support.nspawn import MachineError
from support.wait import wait_for


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.make_ca("machine-tier-ca")


@pytest.fixture(scope="module")
def unit(new_unit, ca: pki.CertificateAuthority) -> Unit:
    """A unit installed with basic auth, TLS and metrics (Juju sets config before install)."""
    unit = new_unit()
    ca_dir = unit.machine.path(CA_DIR)
    ca_dir.mkdir(parents=True)
    (ca_dir / "ca.crt").write_bytes(ca.cert_pem)
    config = {
        "auth-basic-user": USER,
        "auth-basic-password": PASSWORD,
        "prometheus-metrics": True,
        "storage-delete": True,
        **tls_config(ca, "127.0.0.1", "localhost"),
    }
    unit.event("install", **config)
    return unit


def test_install_serves_only_the_charms_configuration(unit: Unit):
    assert unit.answers["install"] == {
        "status": "active",
        "message": f"Ready at {REGISTRY} (https).",
    }
    machine = unit.machine
    assert machine.active("docker-registry")
    assert machine.enabled("docker-registry")
    # The package's postinst did not start the stock registry (plain HTTP, no
    # auth): systemd started the registry once, with the charm's config.
    assert unit.starts("docker-registry") == 1
    assert machine.http(f"https://{REGISTRY}/v2/", cafile=f"{CA_DIR}/ca.crt")[0] == 401
    status, _ = machine.http(
        f"https://{REGISTRY}/v2/", cafile=f"{CA_DIR}/ca.crt", auth=(USER, PASSWORD)
    )
    assert status == 200
    assert machine.http(f"http://{REGISTRY}/v2/")[0] != 200


def test_files_have_their_modes_and_owners(unit: Unit):
    machine = unit.machine
    for path in (
        "/etc/docker/registry/config.yml",
        "/etc/docker/registry/htpasswd",
        "/etc/docker/registry/registry.key",
    ):
        assert machine.stat(path) == (SERVICE_USER, SERVICE_USER, 0o600), path
    assert machine.stat("/etc/docker/registry/registry.crt")[2] == 0o644
    assert machine.stat("/srv/registry")[:2] == (SERVICE_USER, SERVICE_USER)
    assert machine.stat(f"/proc/{unit.main_pid()}")[:2] == (SERVICE_USER, SERVICE_USER)


def test_no_restart_on_no_op_events(unit: Unit):
    pid = unit.main_pid()
    for event in ("config_changed", "update_status", "upgrade_charm", "start"):
        assert unit.event(event)["status"] == "active", event
    assert unit.main_pid() == pid


def test_push_and_pull_with_skopeo(unit: Unit, images):
    for name, (layout, _) in images.items():
        unit.push_layout(layout, name)
    answer = unit.action("push", image=" ".join(f"oci:/root/images/{name}:v1" for name in images))
    assert "failure" not in answer, answer
    for name, (_, digest) in images.items():
        assert skopeo_digest(unit.machine, f"{REGISTRY}/{name}:v1") == digest
    listed = unit.action("images")["results"]
    assert all(f"{name}:v1" in str(listed) for name in images)


def test_a_relation_credential_pulls_through_the_archives_haproxy_and_nothing_else(
    unit: Unit, images
):
    """The front as the unit runs it (the archive's haproxy, its digest check of the
    charm's generated credentials): a relation's credential pulls every blob, cannot
    upload (403), and is refused (401) once the relation is gone."""
    answer = unit.relate("docker-registry")
    assert answer["status"] == "active", answer
    pull = (json.loads(answer["data"]["basic_user"]), json.loads(answer["data"]["basic_password"]))
    machine = unit.machine
    assert machine.active("haproxy")
    name, (_, digest) = next(iter(images.items()))
    assert skopeo_digest(machine, f"{REGISTRY}/{name}:v1", creds=":".join(pull)) == digest
    upload = f"https://{REGISTRY}/v2/{name}/blobs/uploads/"
    cafile = f"{CA_DIR}/ca.crt"
    assert machine.http(upload, method="POST", cafile=cafile, auth=pull)[0] == 403
    assert machine.http(upload, method="POST", cafile=cafile, auth=(USER, PASSWORD))[0] == 202
    assert unit.unrelate("docker-registry")["status"] == "active"
    assert machine.http(f"https://{REGISTRY}/v2/", cafile=cafile, auth=pull)[0] == 401
    assert machine.http(f"https://{REGISTRY}/v2/", cafile=cafile, auth=(USER, PASSWORD))[0] == 200


def test_metrics(unit: Unit):
    machine = unit.machine
    status, body = machine.http("http://127.0.0.1:5001/metrics")
    assert status == 200
    assert "registry_http_requests_total" in body
    # haproxy holds debug-port and passes /metrics only; the profiler is on loopback.
    assert machine.active("haproxy")
    assert machine.http("http://127.0.0.1:5001/debug/pprof/")[0] == 403
    assert machine.http("http://127.0.0.1:5001/debug/vars")[0] == 403
    assert machine.http("http://127.0.0.1:5002/debug/pprof/")[0] == 200


def test_cos_agent_keeps_every_metrics_server_on_loopback(unit: Unit):
    answer = unit.relate("cos-agent")
    assert answer["status"] == "active", answer
    jobs = json.loads(answer["data"]["config"])["metrics_scrape_jobs"]
    targets = {
        j["static_configs"][0]["labels"]["component"]: j["static_configs"][0]["targets"][0]
        for j in jobs
    }
    assert targets == {"registry": "127.0.0.1:5002", "textfile": "127.0.0.1:5004"}
    machine = unit.machine
    assert machine.active("docker-registry-node-exporter")
    # The package's own exporter (every collector, all interfaces) stays off.
    assert not machine.active("prometheus-node-exporter")
    assert not machine.enabled("prometheus-node-exporter")
    assert machine.http("http://127.0.0.1:9100/metrics")[0] == 0
    # No frontend on debug-port: haproxy has nothing to do without mirrors.
    assert machine.http("http://127.0.0.1:5001/metrics")[0] == 0
    assert not machine.active("haproxy")
    assert machine.http("http://127.0.0.1:5002/metrics")[0] == 200
    _, textfile = machine.http("http://127.0.0.1:5004/metrics")
    assert "docker_registry_storage_healthy 1" in textfile
    assert "docker_registry_certificate_expiry_timestamp_seconds " in textfile
    assert "docker_registry_storage_free_bytes " in textfile
    answer = unit.unrelate("cos-agent")
    assert answer["status"] == "active", answer
    assert not machine.active("docker-registry-node-exporter")
    assert machine.active("haproxy")
    assert machine.http("http://127.0.0.1:5001/metrics")[0] == 200


def test_cache_mirrors_on_a_running_unit(unit: Unit, images):
    start_upstream(unit)
    unit.machine.run(
        ["skopeo", "copy", "--dest-tls-verify=false", "oci:/root/images/app0:v1", UPSTREAM_APP]
    )
    answer = unit.event("config_changed", cache_mirrors=MIRRORS)
    # Before the fix the main registry moved onto its socket before apt had
    # installed haproxy and the socket folder existed: Blocked until the next hook.
    assert answer["status"] == "active", answer
    machine = unit.machine
    for service in ("docker-registry", "haproxy", "docker-registry-mirror@upstream.test"):
        assert machine.active(service), service
    sockets = machine.run(["find", "/run/docker-registry", "-type", "s"]).stdout.split()
    assert len(sockets) == 2
    for socket_path in sockets:
        assert machine.stat(socket_path)[:2] == (SERVICE_USER, "haproxy")
    assert machine.stat("/run/docker-registry") == (SERVICE_USER, "haproxy", 0o2750)
    assert machine.stat("/srv/registry/mirrors")[:2] == (SERVICE_USER, SERVICE_USER)
    assert machine.stat("/srv/registry/mirrors/upstream.test")[:2] == (SERVICE_USER, SERVICE_USER)
    digest = images["app0"][1]
    assert skopeo_digest(machine, f"{REGISTRY}/upstream.test/team/app:v1") == digest
    assert skopeo_digest(machine, f"{REGISTRY}/app1:v1") == images["app1"][1]


def test_reboot_with_mirrors_on(unit: Unit, images):
    unit.reboot()
    machine = unit.machine
    # No hook ran: systemd and tmpfiles.d bring everything back. The cache
    # may start before its upstream answers; systemd restarts it until then.
    assert machine.stat("/run/docker-registry") == (SERVICE_USER, "haproxy", 0o2750)
    mirror = f"{REGISTRY}/upstream.test/team/app:v1"
    digest = wait_for(
        lambda: skopeo_digest(machine, mirror),
        timeout=60,
        interval=1,
        what="a pull through the mirror after the reboot",
        ignore=(MachineError,),
    )
    assert digest == images["app0"][1]
    for service in ("docker-registry", "haproxy", "docker-registry-mirror@upstream.test"):
        assert machine.active(service), service
    # The image stays cached: it pulls with the upstream gone.
    machine.run(["systemctl", "stop", "upstream"])
    assert skopeo_digest(machine, mirror) == images["app0"][1]
    assert unit.event("update_status")["status"] == "active"


def test_emptying_cache_mirrors_leaves_nothing_behind(unit: Unit, images):
    answer = unit.event("config_changed", cache_mirrors="")
    assert answer == {"status": "active", "message": f"Ready at {REGISTRY} (https)."}
    machine = unit.machine
    service = "docker-registry-mirror@upstream.test"
    assert not machine.active(service)
    assert not machine.enabled(service)
    # prometheus-metrics is on: haproxy stays, for the /metrics frontend alone.
    assert machine.active("haproxy")
    assert machine.http("http://127.0.0.1:5001/metrics")[0] == 200
    for path in (
        "/run/docker-registry",
        "/etc/systemd/system/docker-registry-mirror@.service",
        "/etc/systemd/system/docker-registry-mirror@.service.d",
        "/etc/docker/registry/mirrors",
        "/etc/tmpfiles.d/docker-registry.conf",
    ):
        assert not machine.exists(path), path
    # The cache's images stay on disk; the main registry serves on its port again.
    assert machine.exists("/srv/registry/mirrors/upstream.test/docker")
    assert skopeo_digest(machine, f"{REGISTRY}/app1:v1") == images["app1"][1]


def test_garbage_collect_as_the_service_user(unit: Unit, images):
    assert "failure" not in unit.action("rmi", image="app2:v1")
    answer = unit.action("garbage-collect")
    assert "failure" not in answer, answer
    assert int(answer["results"]["bytes-freed"]) > 64 * 1024
    machine = unit.machine
    foreign = machine.run(["find", "/srv/registry", "-not", "-user", SERVICE_USER]).stdout
    assert foreign == ""
    assert unit.event("update_status")["status"] == "active"
    assert skopeo_digest(machine, f"{REGISTRY}/app1:v1") == images["app1"][1]


def test_stop_and_start_actions(unit: Unit):
    assert unit.machine.active("haproxy"), "prometheus-metrics: it serves /metrics"
    assert "failure" not in unit.action("stop")
    assert not unit.machine.active("docker-registry")
    assert not unit.machine.active("haproxy")
    assert unit.event("update_status")["status"] == "blocked"
    assert not unit.machine.active("docker-registry")
    assert "failure" not in unit.action("start")
    assert unit.machine.active("docker-registry")
    assert unit.machine.active("haproxy")
    assert unit.event("update_status")["status"] == "active"


def test_stop_and_remove_keep_the_data(unit: Unit):
    for event in ("stop", "remove"):
        answer = unit.event(event)
        assert answer["status"] == "maintenance", answer
        assert "not answering" not in answer["message"]
        assert not unit.machine.active("docker-registry")
    repositories = Path("/srv/registry/docker/registry/v2/repositories")
    assert unit.machine.exists(str(repositories / "app1"))


JUJU_EXEC_CALLS = "/run/juju-exec.calls"
CONFIG = "/etc/docker/registry/config.yml"


@pytest.fixture
def juju_exec(unit: Unit) -> Iterator[str]:
    """A stand-in for Juju's juju-exec: it records how it was called, in the file named."""
    script = f'#!/bin/sh\necho "$@" >> {JUJU_EXEC_CALLS}\n'
    unit.machine.run(["sh", "-c", f"printf '%s' '{script}' > /usr/bin/juju-exec"])
    unit.machine.run(["chmod", "755", "/usr/bin/juju-exec"])
    yield JUJU_EXEC_CALLS
    unit.machine.run(["rm", "-f", "/usr/bin/juju-exec", JUJU_EXEC_CALLS])


def test_the_maintenance_timer_fires_and_goes_with_the_option(unit: Unit, juju_exec: str):
    machine = unit.machine
    timer = "docker-registry-maintenance.timer"
    answer = unit.event("config_changed", maintenance_schedule="*:*:0/2")  # every 2 s
    assert answer["status"] == "active", answer
    assert machine.enabled(timer)
    assert machine.active(timer)
    wait_for(lambda: machine.exists(juju_exec), timeout=30, what="the timer to fire")
    called = machine.run(["cat", juju_exec]).stdout.splitlines()[0]
    assert called == "docker-registry/0 JUJU_DISPATCH_PATH=hooks/scheduled_maintenance ./dispatch"

    unit.event("update_status", leader=False)
    assert machine.active(timer), "filesystem storage: its own disk, its own timer"
    unit.event("config_changed", leader=True, maintenance_schedule="")
    assert not machine.active(timer)
    assert not machine.exists(f"/etc/systemd/system/{timer}")


def test_a_lease_makes_the_unit_read_only_and_its_own_timer_ends_it(unit: Unit, juju_exec: str):
    machine = unit.machine
    lease = {"run": "ab12", "holder": "docker-registry/1", "expires": time.time() + 15}
    answer = unit.event("update_status", peer_app_data={"maintenance-lease": json.dumps(lease)})
    assert "Read-only for maintenance by docker-registry/1" in answer["message"], answer
    assert "enabled: true" in machine.run(["grep", "-A1", "readonly", CONFIG]).stdout
    wait_for(lambda: machine.exists(juju_exec), timeout=60, interval=1, what="the lease's end")
    called = machine.run(["cat", juju_exec]).stdout.splitlines()[0]
    assert called == (
        "docker-registry/0 JUJU_DISPATCH_PATH=hooks/maintenance_lease_expired ./dispatch"
    )
    assert time.time() >= lease["expires"], "not before the lease's end"
    answer = unit.event("update_status")  # what that dispatch runs: a reconcile
    assert "Read-only" not in answer["message"], answer
    assert "enabled: false" in machine.run(["grep", "-A1", "readonly", CONFIG]).stdout
    assert not machine.active("docker-registry-lease-ab12.timer"), "transient: gone"
