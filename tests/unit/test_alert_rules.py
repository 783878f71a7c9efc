"""The alert rules, checked and unit-tested by Prometheus' own promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cosl import JujuTopology

from relations.cos_agent import ALERT_RULES_DIR, alert_rules

TESTS = Path(__file__).resolve().parents[1] / "alert_rules"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus) missing")
TOPOLOGY = JujuTopology(
    model="site",
    model_uuid="2a5b2c6e-7b8f-4c3d-9e1f-0a1b2c3d4e5f",
    application="docker-registry",
    unit="docker-registry/0",
    charm_name="docker-registry",
)


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_rule_files_pass_promtool_check():
    files = sorted(ALERT_RULES_DIR.glob("*.yaml"))
    assert files
    result = promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", sorted(TESTS.glob("*_test.yaml")), ids=lambda p: p.name)
def test_each_alert_fires_and_resolves(test_file):
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_published_rules_carry_our_topology_and_pass_promtool(tmp_path):
    published = alert_rules(TOPOLOGY)
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(published))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    names = [group["name"] for group in published["groups"]]
    assert any(name.endswith("_docker_registry_rules") for name in names), names
    assert any("HostHealth" in name for name in names), names
    for group in published["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["juju_application"] == "docker-registry"
            assert rule["labels"]["juju_model_uuid"] == TOPOLOGY.model_uuid


def generic_alert_active(tmp_path: Path, alert: str, values: str, at: str) -> bool:
    """Whether cosl's generic `alert` is firing at `at` over our `up` series with `values`.

    promtool is told to expect no alert: it fails, naming the alert, when one fires.
    """
    (tmp_path / "published.yaml").write_text(yaml.safe_dump(alert_rules(TOPOLOGY)))
    series = 'up{component="textfile", juju_application="docker-registry", juju_model="site"}'
    test = {
        "rule_files": ["published.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": values}],
                "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": []}],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    result = promtool("test", "rules", tmp_path / "test.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0 or alert in output, output
    return result.returncode != 0


@pytest.mark.parametrize(
    ("alert", "values"),
    [
        ("HostDown", "0x7 1x10"),  # scraped but down for 8 minutes, then up
        ("HostMetricsMissing", "_x7 1x10"),  # no sample for 8 minutes, then up
    ],
)
def test_generic_host_health_fires_on_our_targets_and_resolves(tmp_path, alert, values):
    assert not generic_alert_active(tmp_path, alert, values, "4m"), "pending for 5 minutes"
    assert generic_alert_active(tmp_path, alert, values, "6m")
    assert not generic_alert_active(tmp_path, alert, values, "14m"), "resolved once up"
