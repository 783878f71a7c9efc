"""Where a running registry spends its CPU, from its debug server, for the benchmarks.

Distribution's binary links Go's net/http/pprof, so its debug server (on with
`prometheus-metrics`) serves CPU profiles at /debug/pprof/profile, already
symbolised (the Debian binary is stripped, so perf cannot name its functions).
`go tool pprof` (Debian's golang-go; not a test dependency) prints them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REQUESTS = re.compile(r"^registry_http_requests_total\{(.*)\} (\d+)$", re.MULTILINE)


@contextmanager
def cpu_profile(debug_netloc: str, seconds: int, path: Path) -> Iterator[None]:
    """Profile the registry for `seconds` from entering the block; written to `path` after it."""
    failure: list[BaseException] = []

    def fetch() -> None:
        url = f"http://{debug_netloc}/debug/pprof/profile?seconds={seconds}"
        try:
            with urllib.request.urlopen(url, timeout=seconds + 30) as answer:
                path.write_bytes(answer.read())
        except OSError as error:
            failure.append(error)

    thread = threading.Thread(target=fetch, name="pprof", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=seconds + 35)
    if failure:
        raise RuntimeError(f"no CPU profile from {debug_netloc}: {failure[0]}")


def top(profile: Path, nodes: int = 20, cumulative: bool = False) -> str:
    """`go tool pprof -top` of `profile`, or how to get it without Go."""
    if shutil.which("go") is None:
        return f"(install golang-go to print it: go tool pprof -top {profile})"
    argv = ["go", "tool", "pprof", "-top", f"-nodecount={nodes}"]
    argv += ["-cum"] if cumulative else []
    return subprocess.run([*argv, str(profile)], capture_output=True, text=True, check=True).stdout


def request_counts(debug_netloc: str) -> dict[str, int]:
    """Requests served so far, by handler, method and status: {"blob_upload patch 202": n}."""
    with urllib.request.urlopen(f"http://{debug_netloc}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts = {}
    for labels, count in REQUESTS.findall(text):
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counts[f"{label['handler']} {label['method']} {label['code']}"] = int(count)
    return counts


def counted(debug_netloc: str, run: Callable[[], None]) -> dict[str, int]:
    """The requests `run` made the registry serve, by handler, method and status."""
    before = request_counts(debug_netloc)
    run()
    after = request_counts(debug_netloc)
    return {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}
