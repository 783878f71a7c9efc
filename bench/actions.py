"""Benchmark: the images and rmi actions on a registry holding a site's repositories.

Run: .venv/bin/python bench/actions.py [--counts 500 2000 5000 20000] [--rounds N]

For each count N, a fresh charm unit (Scenario + LocalMachine, as the tests
run it; plain HTTP, storage-delete on) is filled through the registry API with
N repositories, each holding one image made of one shared tiny layer, tagged 3
times (blobs mounted across repositories, so filling costs requests, not
bytes). It then prints, best of the rounds:

- the catalog walk alone, 1,000 a page on one keep-alive connection;
- the walk `images` needs: that catalog walk, then every repository's tags,
  on the same connection (the goal: `images` within 1.2x of it);
- the `images` action, and `images digests=true`; what Scenario alone costs
  per action (`images` of one missing repository: no walk), in both;
- the size of each action's results as `action-set` gets them: the largest
  single argument (Linux refuses one over 128 KiB) and all of them together;
- the same for `rmi` of min(N, 5,000) references (run once, last: it deletes).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT / "src"), str(PROJECT / "tests")]

from ops.hookcmds._action import format_result_dict  # noqa: E402

from charm_context import charm_context, unit_state  # noqa: E402
from local_machine import LocalMachine  # noqa: E402
from support.wait import free_port  # noqa: E402
from workload.registry_api import LocalAccess, RegistryClient  # noqa: E402

TAGS = ("v1", "v2", "latest")
RMI_REFERENCES = 5000
FILL_THREADS = 8
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
ARGUMENT_LIMIT = 128 * 1024


def blob(data: bytes) -> tuple[bytes, str]:
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


class Filler:
    """Fills a registry through its API: blobs uploaded once, then mounted per repository."""

    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()
        layer, self.layer = blob(b"one shared tiny layer")
        config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}
        config["rootfs"]["diff_ids"] = [self.layer]
        config_data, self.config = blob(json.dumps(config).encode())
        self.manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config_data),
                    "digest": self.config,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                        "size": len(layer),
                        "digest": self.layer,
                    }
                ],
            }
        ).encode()
        self.source = "fill/source"
        for data, digest in ((layer, self.layer), (config_data, self.config)):
            _, headers = self.call("POST", f"/v2/{self.source}/blobs/uploads/", expect=202)
            location = headers["Location"].split(f"127.0.0.1:{port}", 1)[-1]
            joiner = "&" if "?" in location else "?"
            self.call("PUT", f"{location}{joiner}digest={digest}", data, expect=201)

    def call(self, method: str, path: str, body: bytes = b"", *, expect: int, headers=None):
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=60
            )
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        response.read()
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}")
        return response.status, response.headers

    def repository(self, name: str) -> None:
        for digest in (self.layer, self.config):
            self.call(
                "POST",
                f"/v2/{name}/blobs/uploads/?mount={digest}&from={self.source}",
                expect=201,
            )
        for tag in TAGS:
            headers = {"Content-Type": MANIFEST_TYPE}
            self.call(
                "PUT", f"/v2/{name}/manifests/{tag}", self.manifest, expect=201, headers=headers
            )


def repository_names(count: int) -> list[str]:
    return [f"team-{i % 50:02d}/service-{i:05d}" for i in range(count)]


def fill(port: int, count: int) -> float:
    filler = Filler(port)
    start = time.perf_counter()
    with ThreadPoolExecutor(FILL_THREADS) as pool:
        list(pool.map(filler.repository, repository_names(count)))
    return time.perf_counter() - start


def walk(port: int, *, tags: bool) -> float:
    """The catalog, 1,000 a page, then (with `tags`) each repository's tags: one connection."""
    client = RegistryClient(LocalAccess("127.0.0.1", port, tls=False))
    start = time.perf_counter()
    repositories = client.catalog(page_size=1000)
    if tags:
        for name in repositories:
            client.tags(name)
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def argument_sizes(results: dict) -> tuple[int, int]:
    """The largest `key=value` argument ops gives action-set, and all of them together."""
    arguments = [len(f"{k}={v}".encode()) for k, v in format_result_dict(results).items()]
    return max(arguments), sum(arguments)


def run_action(ctx, state, action: str, params: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    try:
        ctx.run(ctx.on.action(action, params=params), state)
    except Exception as e:  # an rmi with failures still has results
        print(f"  {action} failed: {str(e)[:200]}")
    return time.perf_counter() - start, dict(ctx.action_results or {})


def measure(count: int, rounds: int) -> None:
    with LocalMachine.temporary() as machine:
        ctx = charm_context(machine)
        port = free_port()
        state = ctx.run(ctx.on.install(), unit_state(port, config={"storage-delete": True}))
        filled = fill(port, count)
        print(f"N={count}: filled in {filled:.1f}s ({count * 5 / filled:.0f} requests/s)")
        times: dict[str, list[float]] = {}
        results: dict[str, dict] = {}
        for _ in range(rounds):
            harness, _ = run_action(ctx, state, "images", {"repository": "no/such"})
            times.setdefault("harness (no walk)", []).append(harness)
            times.setdefault("catalog walk", []).append(walk(port, tags=False))
            times.setdefault("catalog+tags walk", []).append(walk(port, tags=True))
            for name, params in (("images", {}), ("images digests=true", {"digests": True})):
                elapsed, results[name] = run_action(ctx, state, "images", params)
                times.setdefault(name, []).append(elapsed)
        best = {name: min(values) for name, values in times.items()}
        for name, seconds in best.items():
            print(f"  {name:<22} {seconds:8.2f}s")
        ratio = best["images"] / best["catalog+tags walk"]
        net = (best["images"] - best["harness (no walk)"]) / best["catalog+tags walk"]
        print(f"  images / catalog+tags walk: {ratio:.2f}x ({net:.2f}x without the harness)")
        references = [f"{name}:v1" for name in repository_names(count)[:RMI_REFERENCES]]
        elapsed, results[f"rmi of {len(references)}"] = run_action(
            ctx, state, "rmi", {"image": " ".join(references)}
        )
        print(f"  rmi of {len(references)} references {elapsed:8.2f}s")
        for name, result in results.items():
            largest, total = argument_sizes(result)
            verdict = "ok" if largest < ARGUMENT_LIMIT else "E2BIG"
            print(
                f"  {name:<22} results: largest argument {largest / 1024:6.1f} KiB,"
                f" all {total / 1024:6.1f} KiB ({verdict})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description="the images and rmi actions at scale")
    parser.add_argument("--counts", type=int, nargs="+", default=[500, 2000, 5000, 20000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for count in args.counts:
        measure(count, args.rounds)


if __name__ == "__main__":
    main()
