"""A real Prometheus loads what the unit publishes on cos-agent, verbatim, and alerts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
from ops import testing

from charm_context import b64, unit_state
from relations.cos_agent import ENDPOINT, KEY
from support import pki
from support.prometheus import prometheus, shortened, with_topology
from support.registry import RegistryProcess
from support.wait import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus missing"),
]


@pytest.fixture
def upstream() -> Iterator[RegistryProcess]:
    with RegistryProcess() as registry:
        yield registry


def test_prometheus_scrapes_every_target_and_alerts_fire(ctx, machine, port, upstream):
    ca = pki.make_ca()
    cert, key = pki.issue(ca, "127.0.0.1", ["127.0.0.1"], days=10)
    collector = testing.Relation(ENDPOINT, remote_app_name="grafana-agent")
    config = {
        "tls-cert-blob": b64(cert),
        "tls-key-blob": b64(key),
        "tls-ca-blob": b64(ca.cert_pem),
        "cache-mirrors": f"docker.io: {upstream.url}\n",
    }
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), collector])
    state = ctx.run(ctx.on.relation_changed(collector), state)
    payload = json.loads(state.get_relation(collector.id).local_unit_data[KEY])
    jobs = with_topology(payload["metrics_scrape_jobs"])
    with prometheus(jobs, shortened(payload["metrics_alert_rules"])) as server:
        targets = server.wait_all_up()
        components = sorted(t["labels"]["component"] for t in targets)
        assert components == ["haproxy", "mirror", "registry", "textfile"]
        wait_for(
            lambda: "DockerRegistryCertificateExpiresSoon" in server.firing(),
            timeout=30,
            what="the certificate alert",
        )
        assert "DockerRegistryDown" not in server.firing()
        machine.stop("docker-registry")
        wait_for(
            lambda: "DockerRegistryDown" in server.firing(), timeout=30, what="the down alert"
        )
