"""Benchmark: a no-op hook, process start to exit, against a bare `python -c 'import ops'`.

Run: .venv/bin/python bench/hook.py [--rounds N] [--baseline GIT-REV] [--plot PATH]

Juju runs a hook as a new process (`dispatch`: `JUJU_DISPATCH_PATH=hooks/<name>
./src/charm.py`), whose every question to Juju is a hook tool (`config-get`,
`relation-ids`, `status-set`, ...: small programs on PATH talking to the
agent). This script does the same without Juju: a stub directory on PATH
answers the hook tools with canned JSON (a shell script, about as cheap as
Juju's own `jujuc`), `systemctl` is a stub that starts the registry as a
child process, and the charm runs from a scratch charm directory whose
`src/` is the project's, with a unit root in a temporary folder (as the
tests' LocalMachine, but through the real `UbuntuMachine` code path).

A first `config-changed` writes the registry's files and starts it; then,
round by round and in a rotated order, the script times whole processes:
`update-status` and `config-changed` with nothing to change (the registry
answers its probe), and `python -c 'import ops'` (the framework's floor).
It prints the medians, the hook tools each hook called, and the ratios.
With `--baseline`, the same no-op hooks of that revision's charm (its own
scratch unit and registry) run in the same rounds. `--plot PATH` draws the
medians as an SVG.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT / "tests")]

from plot import bar_chart, conditions, save  # noqa: E402

from support.wait import free_port, port_open, wait_for  # noqa: E402

IMPORT_OPS = "python -c 'import ops'"
UNIT = "docker-registry/0"
MODEL_UUID = "00000000-0000-4000-8000-000000000000"
SECRET = "d1bench0000000000000"

# The charm as dispatch runs it, on a unit root under the scratch folder:
# the real UbuntuMachine (apt, systemctl) with only its root and bind address moved.
ENTRY = """\
#!{python}
import os
import sys
from pathlib import Path

sys.path[:0] = [os.path.join(os.path.dirname(os.path.abspath(__file__)))]

import ops

from charm import DockerRegistryCharm
from workload.machine import UbuntuMachine


class BenchMachine(UbuntuMachine):
    root = Path(os.environ["BENCH_UNIT_ROOT"])
    listen_host = "127.0.0.1"


class BenchCharm(DockerRegistryCharm):
    def make_machine(self):
        return BenchMachine()


ops.main(BenchCharm)
"""

# One script for every hook tool: canned answers, each call logged.
HOOK_TOOL = r"""#!/bin/sh
tool=${0##*/}
echo "$tool $*" >> "$BENCH_STATE/calls.log"
case "$tool" in
  config-get) cat "$BENCH_STATE/config.json" ;;
  is-leader) echo true ;;
  relation-ids)
    case "$1" in peer) echo '["peer:1"]' ;; *) echo '[]' ;; esac ;;
  relation-list) echo '[]' ;;
  relation-get)
    case "$*" in
      *--app*) cat "$BENCH_STATE/peer-app.json" ;;
      *) cat "$BENCH_STATE/unit.json" 2>/dev/null || echo '{}' ;;
    esac ;;
  relation-set)
    # What the unit writes, it reads back (the first hook writes; no-op hooks compare).
    case "$*" in
      *--app*) cat > /dev/null ;;
      *) "$BENCH_PYTHON" -c 'import json, sys, yaml; from pathlib import Path
p = Path(sys.argv[1]); old = json.loads(p.read_text()) if p.exists() else {}
p.write_text(json.dumps({**old, **yaml.safe_load(sys.stdin)}))' "$BENCH_STATE/unit.json" ;;
    esac ;;
  secret-set) cat > /dev/null ;;
  secret-get) cat "$BENCH_STATE/secret.json" ;;
  secret-info-get) cat "$BENCH_STATE/secret-info.json" ;;
  network-get) cat "$BENCH_STATE/network.json" ;;
  opened-ports) cat "$BENCH_STATE/ports.json" 2>/dev/null || echo '[]' ;;
  open-port) printf '["%s"]' "$1" > "$BENCH_STATE/ports.json" ;;
  systemctl)
    # The last argument is the unit: --quiet is-active docker-registry, start docker-registry.
    for unit; do :; done
    pidfile="$BENCH_STATE/$unit.pid"
    case "$*" in
      *is-active*|*is-failed*) [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null ;;
      *start*)
        setsid docker-registry serve "$BENCH_UNIT_ROOT/etc/docker/registry/config.yml" \
          >> "$BENCH_STATE/$unit.log" 2>&1 &
        echo $! > "$pidfile" ;;
      *) : ;;
    esac ;;
  *) : ;;
esac
"""
TOOLS = (
    "config-get",
    "is-leader",
    "relation-ids",
    "relation-list",
    "relation-get",
    "relation-set",
    "juju-log",
    "status-set",
    "status-get",
    "secret-get",
    "secret-info-get",
    "secret-set",
    "secret-add",
    "network-get",
    "opened-ports",
    "open-port",
    "close-port",
    "application-version-set",
    "action-get",
    "action-set",
    "action-log",
    "action-fail",
    "juju-reboot",
    "storage-get",
    "storage-list",
    "credential-get",
    "goal-state",
    "state-get",
    "state-set",
    "state-delete",
    "systemctl",
)


def scratch(work: Path, source: Path) -> dict[str, str]:
    """Lay out the charm directory, the stubs and the canned answers; return the environment."""
    charm, bin_dir, state, root = (work / d for d in ("charm", "bin", "state", "root"))
    for folder in (charm, bin_dir, state, root):
        folder.mkdir(parents=True)
    for name in ("templates", "metadata.yaml", "config.yaml", "actions.yaml"):
        (charm / name).symlink_to(source / name)
    (charm / "src").mkdir()
    for path in (source / "src").iterdir():
        (charm / "src" / path.name).symlink_to(path)
    entry = charm / "src" / "bench_charm.py"
    entry.write_text(ENTRY.format(python=sys.executable))
    entry.chmod(0o755)
    stub = bin_dir / "hook-tool"
    stub.write_text(HOOK_TOOL)
    stub.chmod(0o755)
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(stub)
    import yaml

    options = yaml.safe_load((PROJECT / "config.yaml").read_text())["options"]
    config = {name: option["default"] for name, option in options.items() if "default" in option}
    config.update({"registry-port": free_port(), "debug-port": free_port()})
    answers = {
        "config.json": config,
        "peer-app.json": {"http-secret-id": f"secret://{MODEL_UUID}/{SECRET}"},
        "secret.json": {"http-secret": "bench-secret"},
        "secret-info.json": {
            SECRET: {
                "label": "http-secret",
                "owner": "application",
                "revision": 1,
                "rotation": "never",
            }
        },
        "network.json": {
            "bind-addresses": [
                {
                    "interface-name": "lo",
                    "addresses": [{"value": "127.0.0.1", "cidr": "127.0.0.0/8"}],
                }
            ],
            "egress-subnets": ["127.0.0.0/8"],
            "ingress-addresses": ["127.0.0.1"],
        },
    }
    for name, value in answers.items():
        (state / name).write_text(json.dumps(value))
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LANG": "C.UTF-8",
        "JUJU_CHARM_DIR": str(charm),
        "JUJU_UNIT_NAME": UNIT,
        "JUJU_MODEL_NAME": "bench",
        "JUJU_MODEL_UUID": MODEL_UUID,
        "JUJU_VERSION": "3.6.4",
        "BENCH_STATE": str(state),
        "BENCH_PYTHON": sys.executable,
        "BENCH_UNIT_ROOT": str(root),
    }


def run_hook(env: dict[str, str], hook: str) -> float:
    """Run one hook as dispatch does; seconds from process start to exit."""
    charm = Path(env["JUJU_CHARM_DIR"])
    start = time.perf_counter()
    subprocess.run(
        ["./src/bench_charm.py"],
        cwd=charm,
        env={**env, "JUJU_DISPATCH_PATH": f"hooks/{hook}", "PYTHONPATH": str(charm / "src")},
        check=True,  # no timeout: subprocess would poll, in steps of up to 50 ms
    )
    return time.perf_counter() - start


def run_import_ops(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ops"], env=env, check=True)
    return time.perf_counter() - start


def hook_calls(env: dict[str, str], hook: str) -> list[str]:
    """The hook tools one run of `hook` called."""
    log = Path(env["BENCH_STATE"]) / "calls.log"
    log.unlink(missing_ok=True)
    run_hook(env, hook)
    called = (line.split()[0] for line in log.read_text().splitlines() if line.strip())
    return [tool for tool in called if tool in TOOLS]


def start_unit(env: dict[str, str]) -> float:
    """The first config-changed: writes the files and starts the registry."""
    took = run_hook(env, "config-changed")
    port = json.loads((Path(env["BENCH_STATE"]) / "config.json").read_text())["registry-port"]
    wait_for(lambda: port_open("127.0.0.1", port), timeout=30, what="the registry")
    return took


def stop_unit(env: dict[str, str]) -> None:
    pidfile = Path(env["BENCH_STATE"]) / "docker-registry.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pidfile.read_text()), signal.SIGTERM)


def export(revision: str, into: Path) -> Path:
    """The charm files of a git revision of this project, for a side-by-side baseline."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(PROJECT), "archive", revision, "src", "templates", "*.yaml"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def report(times: dict[str, list[float]], calls: dict[str, list[str]]) -> None:
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'process':40s} {'median':>7s}  rounds")
    for name, values in times.items():
        rounds = " ".join(f"{v:.3f}" for v in values)
        print(f"{name:40s} {medians[name]:6.3f}s  {rounds}")
    floor = medians[IMPORT_OPS]
    for name, median in medians.items():
        if name != IMPORT_OPS:
            print(f"{name}: {median:.3f}s (goal <= 0.35 s), {median / floor:.2f}x `import ops`")
    for hook, tools in calls.items():
        print(f"{hook}: {len(tools)} hook tool calls: {' '.join(tools)}")


def plot(times: dict[str, list[float]], rounds: int) -> str:
    """Each process's median time, one panel each, with its ratio to `import ops`."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians[IMPORT_OPS]
    return bar_chart(
        "A no-op hook as a whole process, against a bare `import ops` (bench/hook.py)",
        {name: {f"{median / floor:.2f}x": {"median": median}} for name, median in medians.items()},
        "s",
        [f"Medians of {rounds} rounds, rotated; hook tools answered by stubs.", *conditions()],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Time a no-op hook against `import ops`.")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", help="a git revision whose no-op hook runs alongside")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="also draw an SVG at PATH")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hook-") as tmp:
        work = Path(tmp)
        units = {"": scratch(work / "unit", PROJECT)}
        if args.baseline:
            source = export(args.baseline, work / "baseline-src")
            units[f" [{args.baseline}]"] = scratch(work / "baseline", source)
        try:
            for label, env in units.items():
                print(f"first config-changed{label} (starts the registry): {start_unit(env):.3f}s")
            env = units[""]
            calls = {hook: hook_calls(env, hook) for hook in ("update-status", "config-changed")}
            launches = (Path(env["BENCH_STATE"]) / "docker-registry.pid").read_text()
            methods: dict[str, Callable[[], float]] = {}
            for label, unit_env in units.items():
                for hook in ("update-status", "config-changed"):
                    methods[f"{hook}{label}"] = functools.partial(run_hook, unit_env, hook)
            methods[IMPORT_OPS] = functools.partial(run_import_ops, env)
            for method in methods.values():  # warm the page cache and the template cache
                method()
            times: dict[str, list[float]] = {name: [] for name in methods}
            names = list(methods)
            for round_ in range(args.rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    times[name].append(methods[name]())
            pidfile = Path(env["BENCH_STATE"]) / "docker-registry.pid"
            assert pidfile.read_text() == launches, "a no-op hook restarted the registry"
        finally:
            for env in units.values():
                stop_unit(env)
    report(times, calls)
    if args.plot:
        save(args.plot, plot(times, args.rounds))


if __name__ == "__main__":
    main()
