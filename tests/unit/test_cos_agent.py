"""The cos-agent relation: the payload, loopback-only metrics, the textfile exporter."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import urllib.error
import urllib.request

import pytest
from cosl import LZMABase64
from ops import testing

from charm_context import unit_state, with_config, with_relation
from relations.cos_agent import ENDPOINT, KEY
from support.wait import free_port_run, wait_for

FIELDS = {
    "metrics_alert_rules",
    "log_alert_rules",
    "dashboards",
    "metrics_scrape_jobs",
    "log_slots",
    "subordinate",
    "tracing_protocols",
}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str]:
    try:
        with NO_PROXY.open(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, ""


def scrape(address: str) -> str:
    """The metrics at `address` once its server answers (the exporter starts in the background)."""

    def answered() -> str:
        status, body = get(f"http://{address}/metrics")
        return body if status == 200 else ""

    return wait_for(
        answered,
        timeout=10,
        what=f"metrics at {address}",
        ignore=(OSError,),
    )


def collector() -> testing.Relation:
    return testing.Relation(ENDPOINT, remote_app_name="grafana-agent")


def published(state: testing.State) -> dict:
    relation = state.get_relations(ENDPOINT)[0]
    return json.loads(relation.local_unit_data[KEY])


@pytest.fixture
def related(ctx, port):
    """A unit with prometheus-metrics on and a collector related, after the relation's hooks."""
    state = unit_state(port, config={"prometheus-metrics": True})
    state = ctx.run(ctx.on.config_changed(), state)
    relation = collector()
    state = with_relation(state, relation)
    state = ctx.run(ctx.on.relation_joined(relation), state)
    return ctx.run(ctx.on.relation_changed(state.get_relation(relation.id)), state)


def test_payload_has_the_seven_fields_and_valid_parts(related):
    data = published(related)
    assert set(data) == FIELDS
    assert data["log_slots"] == []
    assert data["subordinate"] is False
    assert data["tracing_protocols"] is None
    jobs = data["metrics_scrape_jobs"]
    names = [job["job_name"] for job in jobs]
    assert len(set(names)) == len(names)
    assert all(names)
    assert {job["static_configs"][0]["labels"]["component"] for job in jobs} == {
        "registry",
        "textfile",
    }
    for job in jobs:
        (target,) = job["static_configs"][0]["targets"]
        assert target.startswith("127.0.0.1:")
    (dashboard,) = [json.loads(LZMABase64.decompress(d)) for d in data["dashboards"]]
    assert re.fullmatch(r"[0-9a-f]{40}", dashboard["uid"])
    assert dashboard["title"] == "Docker Registry"
    assert "charm: docker-registry" in dashboard["tags"]
    groups = data["metrics_alert_rules"]["groups"]
    assert any(g["name"].endswith("_HostHealth_rules") for g in groups)


def test_with_a_collector_no_debug_port_is_opened_and_targets_answer(related, port):
    assert related.opened_ports == {testing.TCPPort(port)}
    targets = {
        job["static_configs"][0]["labels"]["component"]: job["static_configs"][0]["targets"][0]
        for job in published(related)["metrics_scrape_jobs"]
    }
    status, body = get(f"http://{targets['registry']}/metrics")
    assert status == 200
    assert "registry_http_requests_total" in body, "the charm's own probes were counted"
    body = scrape(targets["textfile"])
    assert "docker_registry_storage_healthy 1" in body
    assert re.search(r"^docker_registry_storage_free_bytes \d", body, re.M)


def test_collector_gone_stops_the_exporter_and_reopens_debug_port(ctx, machine, related, port):
    relation = related.get_relations(ENDPOINT)[0]
    state = ctx.run(ctx.on.relation_broken(relation), related)
    remaining = [r for r in state.relations if r.endpoint != ENDPOINT]
    state = ctx.run(ctx.on.config_changed(), dataclasses.replace(state, relations=remaining))
    debug_port = int(state.config["debug-port"])
    assert state.opened_ports == {testing.TCPPort(port), testing.TCPPort(debug_port)}
    assert not machine.running("docker-registry-node-exporter")
    assert not (machine.root / "etc/systemd/system/docker-registry-node-exporter.service").exists()


def test_mirrors_get_their_own_scrape_job_and_haproxy_its_exporter(ctx, machine, port):
    mirrors = "docker.io: http://127.0.0.1:9\n"
    relation = collector()
    state = unit_state(
        port, config={"cache-mirrors": mirrors}, relations=[testing.PeerRelation("peer"), relation]
    )
    state = ctx.run(ctx.on.relation_changed(relation), state)
    jobs = published(state)["metrics_scrape_jobs"]
    labels = [job["static_configs"][0]["labels"] for job in jobs]
    assert {"component": "mirror", "mirror": "docker.io"} in labels
    haproxy = next(
        job["static_configs"][0]["targets"][0]
        for job in jobs
        if job["static_configs"][0]["labels"]["component"] == "haproxy"
    )
    status, body = get(f"http://{haproxy}/metrics")
    assert status == 200
    assert "haproxy_process_" in body
    textfile = next(
        job["static_configs"][0]["targets"][0]
        for job in jobs
        if job["static_configs"][0]["labels"]["component"] == "textfile"
    )
    body = scrape(textfile)
    assert 'docker_registry_mirror_upstream_up{mirror="docker.io"} 0' in body


def test_the_exporter_stops_with_the_unit(ctx, machine, related):
    assert machine.running("docker-registry-node-exporter")
    ctx.run(ctx.on.stop(), related)
    assert not machine.running("docker-registry-node-exporter")


def test_the_payload_follows_the_config(ctx, related):
    state = ctx.run(
        ctx.on.config_changed(),
        with_config(
            related, cache_mirrors="docker.io: http://127.0.0.1:9", debug_port=free_port_run(8)
        ),
    )
    jobs = published(state)["metrics_scrape_jobs"]
    debug_port = int(state.config["debug-port"])
    addresses = {
        j["static_configs"][0]["labels"]["component"]: j["static_configs"][0]["targets"][0]
        for j in jobs
    }
    assert addresses == {
        "registry": f"127.0.0.1:{debug_port + 1}",
        "haproxy": f"127.0.0.1:{debug_port + 2}",
        "textfile": f"127.0.0.1:{debug_port + 3}",
        "mirror": f"127.0.0.1:{debug_port + 4}",
    }
    state = ctx.run(ctx.on.config_changed(), with_config(state, cache_mirrors=""))
    components = {
        j["static_configs"][0]["labels"]["component"]
        for j in published(state)["metrics_scrape_jobs"]
    }
    assert components == {"registry", "textfile"}


def test_an_exporter_apt_cannot_install_blocks_naming_it_and_the_registry_serves(
    ctx, machine, port, monkeypatch
):
    found = shutil.which
    monkeypatch.setattr(
        "shutil.which",
        lambda name, **kw: None if name == "prometheus-node-exporter" else found(name, **kw),
    )

    def no_archive(packages, services=()):
        raise RuntimeError(f"E: Unable to locate package {packages[0]}")

    monkeypatch.setattr(machine, "install_packages", no_archive)
    relation = collector()
    state = unit_state(port, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_changed(relation), state)
    assert state.unit_status == testing.BlockedStatus(
        "cos-agent: cannot install prometheus-node-exporter (storage, certificate and upstream"
        " metrics missing); see juju debug-log"
    )
    assert get(f"http://127.0.0.1:{port}/v2/")[0] == 200, "the registry serves"
    assert not machine.running("prometheus-node-exporter")
