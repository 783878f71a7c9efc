"""Benchmark: pulls through the charm's registry mirror versus straight from the upstream.

Run with `.venv/bin/python bench/mirror.py`. One run measures, side by side:
a containerd pull straight from the upstream, the first (cold) pull through
the mirror, which fetches from the upstream while serving, and warm pulls
through the mirror with the upstream stopped. The image holds some tens of
MB of random data; containerd drops it between pulls. All on loopback.
`--plot PATH` also draws the three pull times as an SVG.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT / "src"), str(PROJECT / "tests")]

from plot import bar_chart, conditions, save  # noqa: E402

from charm_context import charm_context, unit_state  # noqa: E402
from local_machine import LocalMachine  # noqa: E402
from support import oci, skopeo  # noqa: E402
from support.containerd import Containerd, HostEndpoint, write_hosts_toml  # noqa: E402
from support.registry import RegistryProcess  # noqa: E402
from support.wait import free_port  # noqa: E402

LAYER_MB = 16
LAYERS = 3
REPEATS = 3


def timed_pull(containerd: Containerd, ref: str, hosts: Path, digest: str) -> float:
    """Seconds for one pull of `ref`; the image is removed again afterwards."""
    start = time.perf_counter()
    pulled = containerd.pull(ref, hosts_dir=hosts)
    elapsed = time.perf_counter() - start
    assert pulled == digest, f"{ref}: pulled {pulled}, expected {digest}"
    containerd.remove_image(ref)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description="Pulls through the mirror against direct.")
    parser.add_argument(
        "--plot", type=Path, metavar="PATH", help="also draw the pull times as an SVG at PATH"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mirror-", dir="/tmp"))
    machine = LocalMachine(work / "unit")
    machine.root.mkdir()
    try:
        layout = work / "layout"
        layers = [oci.random_layer(LAYER_MB * 2**20, seed=f"bench-{i}") for i in range(LAYERS)]
        digest = oci.build_image(layout, "v1", layers=layers)
        with RegistryProcess() as upstream, Containerd() as containerd:
            ref = upstream.ref("bench/big", "v1")
            skopeo.copy(oci.layout_ref(layout, "v1"), f"docker://{ref}", dest_tls_verify=False)

            direct = work / "direct"
            write_hosts_toml(direct, upstream.netloc, endpoints=[HostEndpoint(upstream.url)])

            ctx = charm_context(machine)
            port = free_port()
            mirrors = json.dumps({upstream.netloc: upstream.url})
            state = ctx.run(
                ctx.on.config_changed(), unit_state(port, config={"cache-mirrors": mirrors})
            )
            params = {"hosts-dir": str(work / "mirror"), "mirror-of": ""}
            ctx.run(ctx.on.action("client-config", params=params), state)
            assert ctx.action_results is not None
            for relative, content in json.loads(ctx.action_results["files"]).items():
                path = work / "mirror" / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)

            straight = [timed_pull(containerd, ref, direct, digest) for _ in range(REPEATS)]
            cold = timed_pull(containerd, ref, work / "mirror", digest)
            upstream.stop()
            warm = [timed_pull(containerd, ref, work / "mirror", digest) for _ in range(REPEATS)]
    finally:
        machine.close()
        shutil.rmtree(work, ignore_errors=True)

    size = LAYERS * LAYER_MB
    direct_s = statistics.median(straight)
    warm_s = statistics.median(warm)
    print(f"image: {LAYERS} layers, {size} MB of random data; containerd pulls, loopback")
    print(f"direct from the upstream (median of {REPEATS}): {direct_s:6.2f} s")
    print(
        f"cold through the mirror (fetches upstream): {cold:6.2f} s  "
        f"{cold / direct_s:4.2f}x direct"
    )
    print(
        f"warm through the mirror, upstream stopped (median of {REPEATS}): "
        f"{warm_s:6.2f} s  {warm_s / direct_s:4.2f}x direct"
    )
    if args.plot:
        pulls = {"direct": direct_s, "cold, mirror": cold, "warm, mirror": warm_s}
        save(
            args.plot,
            bar_chart(
                f"A containerd pull of {size} MB, direct and through the mirror (bench/mirror.py)",
                {"pull": {name: {"seconds": value} for name, value in pulls.items()}},
                "s",
                [
                    f"Medians of {REPEATS} for direct and warm; warm with the upstream stopped.",
                    *conditions(),
                ],
            ),
        )


if __name__ == "__main__":
    main()
