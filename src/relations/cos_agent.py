"""The `cos-agent` endpoint: what the collector on this machine scrapes and loads.

The collector (grafana-agent or opentelemetry-collector, a subordinate) reads
one key of our unit databag, `config`: a JSON object with seven fields (see
docs/reference/metrics-and-alerts.md). We write all seven; it validates them,
and puts itself in Blocked on anything it cannot parse. Topology, rule
labelling and dashboard encoding come from `cosl`, as the Charmhub library does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ops
from cosl import DashboardPath40UID, JujuTopology, LZMABase64
from cosl.rules import Rules, generic_alert_groups

from relations import databag
from state.observability import ObservabilityPlan

ENDPOINT = "cos-agent"
KEY = "config"
SOURCE = Path(__file__).resolve().parents[1]
"""The charm's `src/` folder, where the rules and dashboards ship."""
ALERT_RULES_DIR = SOURCE / "prometheus_alert_rules"
DASHBOARDS_DIR = SOURCE / "grafana_dashboards"


def scrape_jobs(app: str, metrics: ObservabilityPlan) -> list[dict[str, Any]]:
    """One Prometheus scrape_config per loopback target, with a unique job name."""
    return [
        {
            "job_name": f"{app}_{target.name}",
            "metrics_path": "/metrics",
            "scheme": "http",
            "static_configs": [{"targets": [target.address], "labels": target.labels}],
        }
        for target in metrics.targets
    ]


def alert_rules(topology: JujuTopology) -> dict[str, Any]:
    """Our rule files and the generic HostHealth group, labelled with our topology."""
    rules = Rules("promql", topology)
    rules.add_path(ALERT_RULES_DIR)
    rules.add(generic_alert_groups.application_rules, group_name_prefix=topology.identifier)
    return rules.as_dict()


def dashboards(charm_name: str) -> list[str]:
    """Each dashboard with its Path40 uid and charm tag, xz-compressed and base64-encoded."""
    encoded = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        dashboard["uid"] = DashboardPath40UID.generate(
            charm_name, str(path.relative_to(SOURCE.parent))
        )
        dashboard["tags"] = [*dashboard.get("tags", []), f"charm: {charm_name}"]
        encoded.append(LZMABase64.compress(json.dumps(dashboard, sort_keys=True)))
    return encoded


def payload(topology: JujuTopology, metrics: ObservabilityPlan) -> dict[str, Any]:
    """The seven fields of the `config` key."""
    return {
        "metrics_alert_rules": alert_rules(topology),
        "log_alert_rules": {},
        "dashboards": dashboards(topology.charm_name or topology.application),
        "metrics_scrape_jobs": scrape_jobs(topology.application, metrics),
        "log_slots": [],
        "subordinate": False,
        "tracing_protocols": None,
    }


def related(charm: ops.CharmBase) -> bool:
    """Whether a collector is related (metrics then stay on loopback for it)."""
    return bool(charm.model.relations[ENDPOINT])


def publish(charm: ops.CharmBase, metrics: ObservabilityPlan) -> None:
    """Write the payload to the cos-agent relation, if there is one and it changed."""
    relations = [r for r in charm.model.relations[ENDPOINT] if r.active]
    if not relations:
        return
    encoded = json.dumps(payload(JujuTopology.from_charm(charm), metrics), sort_keys=True)
    for relation in relations:
        databag.update(relation.data[charm.unit], {KEY: encoded})
