"""Where metrics are served, and the textfile the charm writes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from state.observability import UnitHealth, textfile_metrics
from state.plan import PlanError
from support.plans import plan


def test_without_metrics_there_is_no_debug_server_and_no_port():
    p = plan()
    assert p.observability is not None
    assert p.observability.registry_debug is None
    assert p.metrics_haproxy_config is None
    assert p.ports == (5000,)
    assert "debug" not in p.config_yaml


def test_metrics_alone_put_haproxy_on_debug_port_before_the_loopback_server():
    p = plan(prometheus_metrics=True)
    assert p.ports == (5000, 5001)
    haproxy = p.metrics_haproxy_config
    assert haproxy is not None
    assert "frontend debug_metrics\n    bind ':5001'\n" in haproxy
    assert "http-request deny unless { method GET HEAD } { path /metrics }" in haproxy
    assert "server registry_debug '127.0.0.1:5002'" in haproxy
    assert "frontend registry" not in haproxy, "no front without cache-mirrors"
    assert "lua-load" not in haproxy


def test_a_collector_keeps_every_metrics_server_on_loopback_and_opens_nothing():
    p = plan(prometheus_metrics=True, cos_agent=True, cache_mirrors="docker.io: https://r.io")
    metrics = p.observability
    assert metrics is not None
    assert p.ports == (5000,)
    assert metrics.debug_frontend is None
    assert metrics.haproxy_exporter == "127.0.0.1:5003"
    assert [(t.name, t.address) for t in metrics.targets] == [
        ("registry", "127.0.0.1:5002"),
        ("mirror-docker.io", "127.0.0.1:5005"),
        ("haproxy", "127.0.0.1:5003"),
        ("textfile", "127.0.0.1:5004"),
    ]
    assert p.front is not None
    assert "frontend debug_metrics" not in p.front.haproxy_config
    assert "bind '127.0.0.1:5003'" in p.front.haproxy_config
    assert "127.0.0.1:5005" in p.front.mirrors[0].config_yaml
    assert metrics.exporter is not None
    assert "--web.listen-address=127.0.0.1:5004" in metrics.exporter.unit
    assert "--collector.disable-defaults --collector.textfile" in metrics.exporter.unit


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"registry_port": 5003, "debug_port": 5001}, "registry-port must be outside"),
        ({"debug_port": 65533}, "pass 65535"),
    ],
)
def test_loopback_ports_that_do_not_fit_are_refused(options, problem):
    with pytest.raises(PlanError, match=problem):
        plan(cos_agent=True, **options)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
def test_textfile_is_valid_exposition_format():
    text = textfile_metrics(
        UnitHealth(
            storage_used_bytes=10**12,
            storage_free_bytes=5,
            storage_healthy=False,
            certificate_not_after=1.8e9,
            upstreams_reachable={"docker.io": True, "ghcr.io": False},
        )
    )
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "docker_registry_storage_used_bytes 1000000000000\n" in text
    assert "docker_registry_storage_healthy 0\n" in text
    assert "docker_registry_certificate_expiry_timestamp_seconds 1800000000\n" in text
    assert 'docker_registry_mirror_upstream_up{mirror="ghcr.io"} 0\n' in text


def test_ports_above_debug_port_are_only_claimed_when_used():
    assert plan(registry_port=5002, debug_port=5001).ports == (5002,)
    assert plan(registry_port=5003, debug_port=5001, prometheus_metrics=True).ports == (5003, 5001)
    with pytest.raises(PlanError, match="registry-port must be outside"):
        plan(registry_port=5002, debug_port=5001, prometheus_metrics=True)
