"""A real Prometheus loads what the unit publishes on cos-agent, verbatim, and alerts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from support.prometheus import observed_unit, prometheus, shortened, with_topology
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
    _, payload = observed_unit(ctx, port, upstream.url, certificate_days=10)
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
