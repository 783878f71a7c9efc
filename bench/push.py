"""Benchmark: the push action against sequential skopeo copies and a single-stream copy.

Run: .venv/bin/python bench/push.py [--rounds N] [--parallel P ...]

Generates 20 images sharing a base layer (about 280 MB of unique,
incompressible data), loads them into a local source registry, then, in the
same run and interleaved round by round, pushes them into a fresh charm
registry (Scenario + LocalMachine, as the tests run it) three ways:

- the charm's `push` action with the whole batch;
- `skopeo copy` of each image, one after another (the established charm's way);
- one `skopeo copy` of a single image made of the same unique layers
  (the registry's single-stream ingest: the practical limit).

Before timing, one untimed copy of every source blob warms the page cache and
the binaries, so no method pays for a cold start; each round then runs the
methods in a rotated order, so drift in the machine's load (it is shared)
does not always favour the same one. It prints, per method, the best and the
median of the rounds, the ratios the issue sets goals for (from the best
times), and what the test harness alone costs: Scenario running the push
action on an image that fails at once (included in the action's times).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT / "src"), str(PROJECT / "tests")]

from ops import testing  # noqa: E402

from charm_context import charm_context, unit_state  # noqa: E402
from local_machine import LocalMachine  # noqa: E402
from support import oci, skopeo  # noqa: E402
from support.registry import RegistryProcess  # noqa: E402
from support.wait import free_port  # noqa: E402

IMAGES = 20
BASE_BYTES = 40 << 20
UNIQUE_BYTES = 12 << 20
ALL = "all-layers"


def build_images(layout: Path) -> None:
    """20 two-layer images on one base, and one image holding every distinct layer.

    The bytes are random, so gzip level 0 (stored) gives the same sizes as any
    level, faster; nothing on the push path decompresses layers.
    """
    base = oci.make_layer(oci.random_layer(BASE_BYTES, "bench-base"), compresslevel=0)
    layers = [base]
    for i in range(IMAGES):
        unique = oci.make_layer(oci.random_layer(UNIQUE_BYTES, f"bench-{i}"), compresslevel=0)
        layers.append(unique)
        oci.build_image(layout, f"img{i}", layers=[base, unique])
    oci.build_image(layout, ALL, layers=layers)


def load_source(layout: Path, source: RegistryProcess) -> None:
    for name in [*(f"img{i}" for i in range(IMAGES)), ALL]:
        skopeo.copy(
            oci.layout_ref(layout, name),
            f"docker://{source.ref(f'bench/{name}', 'v1')}",
            dest_tls_verify=False,
        )


def fresh_unit(work: Path) -> tuple[LocalMachine, object, object, str]:
    """A charm unit with its registry started: (machine, ctx, state, netloc)."""
    root = Path(tempfile.mkdtemp(prefix="unit-", dir=work))
    machine = LocalMachine(root)
    ctx = charm_context(machine)
    port = free_port()
    state = ctx.run(ctx.on.install(), unit_state(port))
    return machine, ctx, state, f"127.0.0.1:{port}"


def timed(work: Path, run: Callable[[object, object, str], None]) -> float:
    machine, ctx, state, netloc = fresh_unit(work)
    try:
        start = time.perf_counter()
        run(ctx, state, netloc)
        return time.perf_counter() - start
    finally:
        machine.close()
        shutil.rmtree(machine.root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the push action against skopeo copies.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, nargs="*", default=[4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        build_images(work / "layout")
        unique = sum(p.stat().st_size for p in (work / "layout/blobs").rglob("*") if p.is_file())
        took = time.perf_counter() - start
        print(f"generated {IMAGES} images, {unique / 1e6:.0f} MB unique ({took:.1f}s)")
        with RegistryProcess() as source:
            load_source(work / "layout", source)
            sources = [source.ref(f"bench/img{i}", "v1") for i in range(IMAGES)]

            def push_action(parallel: int) -> Callable[[object, object, str], None]:
                def run(ctx, state, netloc: str) -> None:
                    params = {
                        "image": "\n".join(sources),
                        "source-tls-verify": False,
                        "parallel": parallel,
                    }
                    ctx.run(ctx.on.action("push", params=params), state)
                    assert ctx.action_results["outcome"] == "success", ctx.action_results

                return run

            def push_nothing(ctx, state, netloc: str) -> None:
                params = {"image": "Invalid//Reference"}
                with contextlib.suppress(testing.ActionFailed):
                    ctx.run(ctx.on.action("push", params=params), state)

            def sequential(ctx, state, netloc: str) -> None:
                for i, ref in enumerate(sources):
                    skopeo.copy(
                        f"docker://{ref}",
                        f"docker://{netloc}/img{i}:v1",
                        src_tls_verify=False,
                        dest_tls_verify=False,
                    )

            def single(ctx, state, netloc: str) -> None:
                skopeo.copy(
                    f"docker://{source.ref(f'bench/{ALL}', 'v1')}",
                    f"docker://{netloc}/{ALL}:v1",
                    src_tls_verify=False,
                    dest_tls_verify=False,
                )

            methods: dict[str, Callable[[object, object, str], None]] = {
                f"push action (parallel={p})": push_action(p) for p in args.parallel
            }
            methods["sequential skopeo copy"] = sequential
            methods["single-stream skopeo copy"] = single
            timed(work, single)  # warm-up, untimed
            harness = timed(work, push_nothing)
            names = list(methods)
            times: dict[str, list[float]] = {name: [] for name in methods}
            for round_ in range(args.rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    times[name].append(timed(work, methods[name]))
    best = {name: min(values) for name, values in times.items()}
    print(f"{'method':32s} {'best':>6s}  {'median':>6s}  rounds")
    for name, values in times.items():
        rounds = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:32s} {best[name]:6.2f}  {statistics.median(values):6.2f}  {rounds}")
    print(f"{'harness alone (push, no copy)':32s} {harness:6.2f}")
    seq, one = best["sequential skopeo copy"], best["single-stream skopeo copy"]
    for name in methods:
        if name.startswith("push action"):
            print(
                f"{name}: {seq / best[name]:.2f}x faster than sequential (goal >= 1.5), "
                f"{best[name] / one:.2f}x single-stream time (goal <= 1.3)"
            )
    print(json.dumps({name: round(value, 3) for name, value in best.items()}))


if __name__ == "__main__":
    main()
