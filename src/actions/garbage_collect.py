"""The garbage-collect action: free the disk held by blobs no manifest references.

The registry's own `garbage-collect` must not run while images are pushed,
so the registry first serves read-only (pulls keep working, pushes are
refused), and is always put back to its normal plan afterwards, even when
collection fails.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from state.plan import RegistryPlan
from workload.registry import SERVICE_USER, Registry
from workload.registry_api import RegistryClient

GC_TIMEOUT = 6 * 3600.0


class GarbageCollectError(RuntimeError):
    """Collection failed; the message says why (the registry is back to normal)."""


@dataclass(frozen=True, kw_only=True)
class GarbageCollectParams:
    """The garbage-collect action's parameters."""

    delete_untagged: bool = False


@dataclass(frozen=True)
class Collected:
    """The outcome: bytes freed (None for object storage) and the registry's summary."""

    bytes_freed: int | None
    summary: str

    def results(self) -> dict:
        """The action's results."""
        freed = "unknown (object storage)" if self.bytes_freed is None else self.bytes_freed
        return {"outcome": "success", "bytes-freed": freed, "summary": self.summary}


def collect_garbage(
    registry: Registry,
    normal: RegistryPlan,
    read_only: RegistryPlan,
    *,
    delete_untagged: bool,
    serving: bool,
    log: Callable[[str], None],
    timeout: float = GC_TIMEOUT,
) -> Collected:
    """Switch to read-only (when `serving`), collect, switch back; measure the disk.

    On shared object storage, other units keep accepting pushes unless the
    whole application is read-only, and collecting then could delete blobs of
    an image being pushed: refuse unless `storage-read-only` is set.
    """
    if normal.data_dir is None and not normal.read_only:
        raise GarbageCollectError(
            "images are in shared object storage: first make every unit read-only with "
            "juju config docker-registry storage-read-only=true"
        )
    before = storage_size(normal.data_dir)
    try:
        if serving:
            log("switching the registry to read-only maintenance")
            registry.apply(read_only)
            if not registry.wait_until_answering(read_only):
                raise GarbageCollectError("the registry did not answer in read-only mode")
        log("collecting garbage")
        summary = run_garbage_collect(
            registry, normal.config_path, delete_untagged=delete_untagged, timeout=timeout
        )
    finally:
        if serving:
            log("switching the registry back to normal")
            registry.apply(normal)
            registry.wait_until_answering(normal)
    after = storage_size(normal.data_dir)
    freed = None if before is None or after is None else max(before - after, 0)
    return Collected(freed, summary)


def multi_arch_tags(client: RegistryClient) -> list[str]:
    """repository:tag of each tag naming an index (a multi-arch image).

    Distribution 2.8's `garbage-collect --delete-untagged` deletes the
    platform manifests such an index names (no tag names them) and then
    their layers: the image no longer pulls. Found with the e2e tests.
    """
    found = []
    for repository in client.catalog():
        for tag in sorted(client.tags(repository)):
            manifest = client.manifest(repository, tag)
            if manifest is not None and manifest.children():
                found.append(f"{repository}:{tag}")
    return found


def run_garbage_collect(
    registry: Registry,
    config_path: Path,
    *,
    delete_untagged: bool,
    timeout: float = GC_TIMEOUT,
) -> str:
    """Run `docker-registry garbage-collect` as the service user; return its summary line.

    As the service user, so that nothing it touches becomes root's; through
    the Machine seam, which knows how to switch users on this unit. Stopped
    after `timeout` seconds: the blobs it deleted stay deleted, the others
    are still unreferenced, and the next run finds them.
    """
    argv = ["docker-registry", "garbage-collect"]
    if delete_untagged:
        argv.append("--delete-untagged")
    argv.append(str(config_path))
    try:
        done = registry.machine.run_as(SERVICE_USER, argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GarbageCollectError(f"garbage-collect timed out after {timeout:.0f}s") from None
    except OSError as e:
        raise GarbageCollectError(f"cannot run docker-registry garbage-collect: {e}") from None
    output = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode != 0 and any(_NOTHING_STORED.search(line) for line in output):
        return NOTHING_STORED
    if done.returncode != 0:
        reason = output[0] if output else f"exit status {done.returncode}"
        raise GarbageCollectError(f"docker-registry garbage-collect failed: {reason}")
    return counts_line(output)


# A registry nothing was ever pushed to has no repositories folder, and the
# registry's mark phase fails on it (on filesystem and object storage alike).
_NOTHING_STORED = re.compile(r"Path not found: /docker/registry/v2/repositories$")
NOTHING_STORED = "nothing stored yet"

# The registry's closing line, e.g. "2502 blobs marked, 2500 blobs and 0 manifests
# eligible for deletion"; every blob it deletes has a line saying so too.
_COUNTS = re.compile(r"\d+ blobs marked, \d+ blobs and \d+ manifests eligible for deletion")


def counts_line(output: list[str]) -> str:
    """The registry's counts line from garbage-collect's output; empty if it printed none."""
    for line in reversed(output):
        match = _COUNTS.search(line)
        if match:
            return match.group(0)
    return ""


def storage_size(data_dir: Path | None) -> int | None:
    """Bytes in the filesystem storage; None when images live in object storage."""
    if data_dir is None:
        return None
    total = 0
    for folder, _, files in os.walk(data_dir):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total
