"""Benchmark: the push action against sequential skopeo copies and a single-stream copy.

Run: .venv/bin/python bench/push.py [--rounds N] [--parallel P ...]
     .venv/bin/python bench/push.py --per-image [--counts 5 20 50] [--rounds N]
Either takes --plot PATH to draw its figures as an SVG.

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

`--per-image` measures what each image costs when images are small (one
shared 1 MB base, 64 KB of their own): 5, 20 and 50 of them pushed by the
action and by sequential skopeo, rounds rotated, printing the wall time and
the CPU time (the charm's process, skopeo and the unit's registry; not the
source registry, the same for both) per image.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
from plot import bar_chart, conditions, save  # noqa: E402

from charm_context import charm_context, unit_state  # noqa: E402
from local_machine import LocalMachine  # noqa: E402
from support import oci, pprof, skopeo  # noqa: E402
from support.cpu import cpu_seconds  # noqa: E402
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


def fresh_unit(work: Path, config: dict | None = None) -> tuple[LocalMachine, object, object, str]:
    """A charm unit with its registry started: (machine, ctx, state, netloc)."""
    root = Path(tempfile.mkdtemp(prefix="unit-", dir=work))
    machine = LocalMachine(root)
    ctx = charm_context(machine)
    port = free_port()
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    return machine, ctx, state, f"127.0.0.1:{port}"


def timed(work: Path, run: Callable[[object, object, str], None]) -> float:
    return timed_with_cpu(work, run)[0]


def timed_with_cpu(
    work: Path, run: Callable[[object, object, str], None]
) -> tuple[float, float, float]:
    """Wall time, CPU time of this process and its waited children (skopeo), of the registry."""
    machine, ctx, state, netloc = fresh_unit(work)
    try:
        groups = machine.process_groups()
        cpu_before, times_before = cpu_seconds(groups), os.times()
        start = time.perf_counter()
        run(ctx, state, netloc)
        took = time.perf_counter() - start
        times = os.times()
        own = sum(times[:4]) - sum(times_before[:4])
        return took, own, cpu_seconds(groups) - cpu_before
    finally:
        machine.close()
        shutil.rmtree(machine.root, ignore_errors=True)


def copy_each(sources: list[str]) -> Callable[[object, object, str], None]:
    """`skopeo copy` of each image, one after another (the established charm's way)."""

    def run(ctx, state, netloc: str) -> None:
        for i, ref in enumerate(sources):
            skopeo.copy(
                f"docker://{ref}",
                f"docker://{netloc}/img{i}:v1",
                src_tls_verify=False,
                dest_tls_verify=False,
            )

    return run


def push_all(sources: list[str], parallel: int) -> Callable[[object, object, str], None]:
    """The push action with the whole batch."""

    def run(ctx, state, netloc: str) -> None:
        params = {"image": "\n".join(sources), "source-tls-verify": False, "parallel": parallel}
        ctx.run(ctx.on.action("push", params=params), state)
        assert ctx.action_results["outcome"] == "success", ctx.action_results

    return run


def small_images(work: Path, source: RegistryProcess, count: int) -> list[str]:
    """`count` small images in `source` (a shared 1 MB base, 64 KB of their own): references."""
    layout = work / "layout"
    base = oci.make_layer(oci.random_layer(1 << 20, "small-base"), compresslevel=0)
    for i in range(count):
        unique = oci.make_layer(oci.random_layer(64 << 10, f"small-{i}"), compresslevel=0)
        oci.build_image(layout, f"small{i}", layers=[base, unique])
        skopeo.copy(
            oci.layout_ref(layout, f"small{i}"),
            f"docker://{source.ref(f'bench/small{i}', 'v1')}",
            dest_tls_verify=False,
        )
    return [source.ref(f"bench/small{i}", "v1") for i in range(count)]


def per_image(counts: list[int], rounds: int, plot: Path | None) -> None:
    """Small images: what each costs, in time and CPU, for several batch sizes."""
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp, RegistryProcess() as source:
        work = Path(tmp)
        references = small_images(work, source, max(counts))
        methods: dict[str, Callable[[object, object, str], None]] = {}
        for count in counts:
            sources = references[:count]
            methods[f"{count} images, push action"] = push_all(sources, 4)
            methods[f"{count} images, sequential skopeo"] = copy_each(sources)
        timed(work, push_all(references[:1], 4))  # warm-up, untimed
        names = list(methods)
        measured: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                measured[name].append(timed_with_cpu(work, methods[name]))
    print(f"{'batch':34s} {'wall':>8s} {'CPU: charm+skopeo':>18s} {'registry':>9s}  per image")
    medians = {}
    for name, values in measured.items():
        count = int(name.split()[0])
        wall, own, registry = (statistics.median(v[i] for v in values) / count for i in range(3))
        medians[name] = wall
        print(f"{name:34s} {wall * 1000:6.1f}ms {own * 1000:16.1f}ms {registry * 1000:7.1f}ms")
    for count in counts:
        ratio = (
            medians[f"{count} images, sequential skopeo"] / medians[f"{count} images, push action"]
        )
        print(f"{count} images: push action {ratio:.2f}x faster than sequential skopeo")
    if plot:
        groups = {
            f"{count} images": {
                way: medians[f"{count} images, {way}"] * 1000
                for way in ("push action", "sequential skopeo")
            }
            for count in counts
        }
        save(
            plot,
            bar_chart(
                "Pushing small images: wall time per image (bench/push.py --per-image)",
                {"wall per image": groups},
                "ms",
                [f"Medians of {rounds} rounds; push action with parallel 4.", *conditions()],
            ),
        )


def profile(count: int, seconds: int) -> None:
    """Where pushing `count` small images spends CPU: per process, per request, per function.

    The unit's registry runs with its debug server (`prometheus-metrics`), which
    counts its requests and profiles it for the first `seconds` of the push.
    """
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp, RegistryProcess() as source:
        work = Path(tmp)
        sources = small_images(work, source, count)
        timed(work, push_all(sources[:1], 4))  # warm-up, untimed
        machine, ctx, state, netloc = fresh_unit(work, {"prometheus-metrics": True})
        debug = f"127.0.0.1:{state.config['debug-port']}"  # type: ignore[attr-defined]
        assert source.pid is not None
        try:
            groups, sources_group = machine.process_groups(), {source.pid}
            before = os.times(), cpu_seconds(groups), cpu_seconds(sources_group)
            start = time.perf_counter()
            with pprof.cpu_profile(debug, seconds, work / "registry.pprof"):
                requests = pprof.counted(debug, lambda: push_all(sources, 4)(ctx, state, netloc))
            took = time.perf_counter() - start
            after = os.times(), cpu_seconds(groups), cpu_seconds(sources_group)
            tops = [
                pprof.top(work / "registry.pprof", nodes=25, cumulative=c) for c in (True, False)
            ]
        finally:
            machine.close()
            shutil.rmtree(machine.root, ignore_errors=True)
    ms = 1000 / count
    cpu = {
        "the charm (Python: Scenario, the action)": sum(after[0][:2]) - sum(before[0][:2]),
        "skopeo processes": sum(after[0][2:4]) - sum(before[0][2:4]),
        "the unit's registry": after[1] - before[1],
        "the source registry": after[2] - before[2],
    }
    print(f"{count} small images, push action (parallel 4): {took * ms:.1f} ms wall per image")
    print("CPU per image:")
    for name, seconds_used in cpu.items():
        print(f"  {name:42s} {seconds_used * ms:6.1f} ms")
    print(f"  {'all':42s} {sum(cpu.values()) * ms:6.1f} ms")
    print(f"requests the unit's registry served per image ({sum(requests.values()) / count:.1f}):")
    for name, served in sorted(requests.items(), key=lambda item: -item[1]):
        print(f"  {name:42s} {served / count:6.2f}")
    for order, top in zip(("cumulative", "own"), tops, strict=True):
        print(f"the unit's registry, first {seconds} s of the push, by {order} CPU:\n{top}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the push action against skopeo copies.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, nargs="*", default=[4])
    parser.add_argument("--per-image", action="store_true", help="small images, per-image cost")
    parser.add_argument("--counts", type=int, nargs="*", default=[5, 20, 50])
    parser.add_argument(
        "--profile",
        type=int,
        metavar="IMAGES",
        help="where pushing this many small images spends CPU (needs golang-go for the profile)",
    )
    parser.add_argument("--profile-seconds", type=int, default=2)
    parser.add_argument("--plot", type=Path, metavar="PATH", help="also draw an SVG at PATH")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.profile_seconds)
        return
    if args.per_image:
        per_image(args.counts, args.rounds, args.plot)
        return
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

            def push_nothing(ctx, state, netloc: str) -> None:
                params = {"image": "Invalid//Reference"}
                with contextlib.suppress(testing.ActionFailed):
                    ctx.run(ctx.on.action("push", params=params), state)

            def single(ctx, state, netloc: str) -> None:
                skopeo.copy(
                    f"docker://{source.ref(f'bench/{ALL}', 'v1')}",
                    f"docker://{netloc}/{ALL}:v1",
                    src_tls_verify=False,
                    dest_tls_verify=False,
                )

            methods: dict[str, Callable[[object, object, str], None]] = {
                f"push action (parallel={p})": push_all(sources, p) for p in args.parallel
            }
            methods["sequential skopeo copy"] = copy_each(sources)
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
    if args.plot:
        save(
            args.plot,
            bar_chart(
                f"Pushing {IMAGES} large images (bench/push.py)",
                {
                    name: {f"best of {args.rounds}": {"seconds": value}}
                    for name, value in best.items()
                },
                "s",
                ["The push action against skopeo copies, rounds rotated.", *conditions()],
            ),
        )


if __name__ == "__main__":
    main()
