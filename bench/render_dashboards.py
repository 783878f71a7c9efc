"""Render each dashboard panel's data to a PNG, from a real Prometheus scraping a unit under load.

Run: .venv/bin/python bench/render_dashboards.py [--seconds 90] [--out docs/images]

One charm unit (Scenario + LocalMachine, as the tests run it) with TLS (a
certificate valid for 40 days), a mirror of a local upstream registry, and a
collector related on cos-agent. Debian's Prometheus loads the published scrape
jobs (with the collector's topology labels added) and scrapes every 2 s while
client threads pull manifests and blobs from the registry and the mirror,
and ask for missing ones (404s). Each panel's expressions of
src/grafana_dashboards/*.json are then queried over the load window through
Prometheus' HTTP API and drawn with matplotlib, one PNG per panel.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT / "src"), str(PROJECT / "tests")]

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from charm_context import charm_context  # noqa: E402
from local_machine import LocalMachine  # noqa: E402
from relations.cos_agent import DASHBOARDS_DIR  # noqa: E402
from support import oci, skopeo  # noqa: E402
from support.prometheus import Prometheus, observed_unit, prometheus, with_topology  # noqa: E402
from support.registry import RegistryProcess  # noqa: E402
from support.wait import free_port  # noqa: E402

VARIABLES = {"$__rate_interval": "20s"}
"""Grafana's variables as the renderer substitutes them; the topology ones match all."""


def load(base: str, paths: list[str], stop: threading.Event) -> None:
    """GET each path in turn until `stop`; TLS not verified (a test CA), no proxy."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    headers = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    while not stop.is_set():
        for path in paths:
            try:
                with opener.open(
                    urllib.request.Request(base + path, headers=headers), timeout=10
                ) as r:
                    r.read()
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.05)


def expression(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r'=~"\$[a-z_]+"', '=~".*"', expr)


def legend(template: str, labels: dict[str, str]) -> str:
    return (
        re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template).strip() or "value"
    )


def render(server: Prometheus, dashboard: dict, start: float, end: float, out: Path) -> list[Path]:
    written = []
    for panel in dashboard["panels"]:
        figure, axes = plt.subplots(figsize=(10, 3.2), dpi=90)
        lines = 0
        for target in panel["targets"]:
            for series in server.query_range(expression(target["expr"]), start, end, 2):
                points = [(float(t) - start, float(v)) for t, v in series["values"]]
                if points:
                    xs, ys = zip(*points, strict=True)
                    axes.plot(
                        xs, ys, label=legend(target.get("legendFormat", ""), series["metric"])
                    )
                    lines += 1
        axes.set_title(f"{panel['title']} ({panel['fieldConfig']['defaults']['unit']})")
        axes.set_xlabel("seconds into the run")
        axes.ticklabel_format(axis="y", useOffset=False)
        axes.grid(alpha=0.3)
        if lines:
            axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        figure.tight_layout()
        slug = re.sub(r"[^a-z0-9]+", "-", panel["title"].lower()).strip("-")
        path = out / f"dashboard-{slug}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
        print(f"{path}: {lines} series")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--out", type=Path, default=PROJECT / "docs/images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with LocalMachine.temporary() as machine, RegistryProcess() as upstream:
        layout = Path(tempfile.mkdtemp(prefix="layout-"))
        layer = oci.random_layer(4 << 20, seed="dashboard")
        digest = oci.build_image(layout, "v1", layers=[layer])
        manifest = json.loads(oci.read_blob(layout, digest))
        blob = manifest["layers"][0]["digest"]
        skopeo.copy(
            oci.layout_ref(layout, "v1"),
            f"docker://{upstream.netloc}/library/app:v1",
            dest_tls_verify=False,
        )
        ctx = charm_context(machine)
        port = free_port()
        state, payload = observed_unit(ctx, port, upstream.url, certificate_days=40)
        skopeo.copy(
            oci.layout_ref(layout, "v1"),
            f"docker://127.0.0.1:{port}/team/app:v1",
            dest_tls_verify=False,
        )
        with prometheus(with_topology(payload["metrics_scrape_jobs"]), interval="2s") as server:
            server.wait_all_up()
            start = time.time()
            stop = threading.Event()
            paths = [
                [
                    "/v2/",
                    "/v2/team/app/manifests/v1",
                    f"/v2/team/app/blobs/{blob}",
                    "/v2/team/app/tags/list",
                    "/v2/team/missing/manifests/v1",
                ],
                [
                    "/v2/docker.io/library/app/manifests/v1",
                    f"/v2/docker.io/library/app/blobs/{blob}",
                ],
            ]
            threads = [
                threading.Thread(target=load, args=(f"https://127.0.0.1:{port}", p, stop))
                for p in paths * 2
            ]
            for thread in threads:
                thread.start()
            time.sleep(args.seconds / 2)
            ctx.run(ctx.on.update_status(), state)  # the textfile again, mid-run
            time.sleep(args.seconds / 2)
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            time.sleep(4)  # the last scrape
            end = time.time()
            for path in sorted(DASHBOARDS_DIR.glob("*.json")):
                render(server, json.loads(path.read_text()), start, end, args.out)


if __name__ == "__main__":
    main()
