"""Debian's Prometheus on loopback, loaded with what a collector would send it."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from ops import testing

from charm_context import b64, unit_state
from relations.cos_agent import ENDPOINT, KEY
from support import pki
from support.wait import WaitTimeoutError, free_port, wait_for

TOPOLOGY_LABELS = {
    "juju_model": "site",
    "juju_model_uuid": "2a5b2c6e-7b8f-4c3d-9e1f-0a1b2c3d4e5f",
    "juju_application": "docker-registry",
    "juju_unit": "docker-registry/0",
}
"""What the collector adds to every target of the principal unit."""
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def with_topology(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The published scrape jobs as the collector runs them: our unit's topology added."""
    jobs = copy.deepcopy(jobs)
    for job in jobs:
        for static in job["static_configs"]:
            static["labels"] = {**static.get("labels", {}), **TOPOLOGY_LABELS}
    return jobs


def shortened(rules: dict[str, Any], wait: str = "1s") -> dict[str, Any]:
    """A copy of `rules` whose `for:` durations are `wait` (tests only: alerts fire at once)."""
    rules = copy.deepcopy(rules)
    for group in rules.get("groups", []):
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = wait
    return rules


def observed_unit(
    ctx: testing.Context, port: int, upstream_url: str, *, certificate_days: int
) -> tuple[testing.State, dict[str, Any]]:
    """A unit serving TLS with one mirror of `upstream_url` and a collector related.

    Returns the state after the collector's relation-changed and the payload it got.
    """
    ca = pki.make_ca()
    cert, key = pki.issue(ca, "127.0.0.1", ["127.0.0.1"], days=certificate_days)
    collector = testing.Relation(
        ENDPOINT, remote_app_name="grafana-agent", remote_units_data={0: {}}
    )
    config = {
        "tls-cert-blob": b64(cert),
        "tls-key-blob": b64(key),
        "tls-ca-blob": b64(ca.cert_pem),
        "cache-mirrors": f"docker.io: {upstream_url}\n",
    }
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), collector])
    state = ctx.run(ctx.on.relation_changed(collector, remote_unit=0), state)
    return state, json.loads(state.get_relation(collector.id).local_unit_data[KEY])


class Prometheus:
    """A running Prometheus and its HTTP API."""

    def __init__(self, url: str):
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with NO_PROXY.open(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            return json.load(response)["data"]

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def firing(self) -> set[str]:
        """Names of the alerts firing now."""
        return {
            a["labels"]["alertname"]
            for a in self.api("alerts")["alerts"]
            if a["state"] == "firing"
        }

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))[
            "result"
        ]

    def wait_all_up(self, timeout: float = 60) -> list[dict[str, Any]]:
        def all_up() -> list[dict[str, Any]]:
            targets = self.targets()
            return targets if targets and all(t["health"] == "up" for t in targets) else []

        try:
            return wait_for(all_up, timeout=timeout, what="every target up", ignore=(OSError,))
        except WaitTimeoutError as e:
            down = [
                f"{t.get('scrapeUrl')}: {t.get('lastError')}"
                for t in self.targets()
                if t.get("health") != "up"
            ]
            raise WaitTimeoutError(f"{e}; down: {down}") from None


@contextlib.contextmanager
def prometheus(
    scrape_jobs: list[dict[str, Any]],
    rules: dict[str, Any] | None = None,
    *,
    interval: str = "1s",
    workdir: Path | None = None,
) -> Iterator[Prometheus]:
    """Prometheus scraping `scrape_jobs` and evaluating `rules` every `interval`, on loopback."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus (Debian's package) is not installed")
    with tempfile.TemporaryDirectory(prefix="prometheus-", dir=workdir) as tmp:
        folder = Path(tmp)
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": scrape_jobs,
        }
        if rules is not None:
            (folder / "rules.yaml").write_text(yaml.safe_dump(rules))
            config["rule_files"] = [str(folder / "rules.yaml")]
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = (folder / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            server = Prometheus(f"http://127.0.0.1:{port}")

            def ready() -> bool:
                if process.poll() is not None:
                    raise RuntimeError((folder / "prometheus.log").read_text()[-2000:])
                with NO_PROXY.open(f"{server.url}/-/ready", timeout=2) as response:
                    return response.status == 200

            wait_for(ready, timeout=30, what="prometheus ready", ignore=(OSError,))
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log.close()
