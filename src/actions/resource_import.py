"""The `images` resource: a bundle Juju delivers, imported in the background of the unit.

A hook must not push thousands of images (Juju kills hooks that run too
long, and the unit does nothing else meanwhile). So when a resource with
new content arrives, a hook writes the job's spec and starts this module
as a transient systemd unit (`JOB`); the job pushes with the push action's
own code (`push.plan_copies`, `push.push_images`: the same names, the same
namespace rule, images already there are not copied again) and writes its
progress to a file the later hooks read for the unit's status.

The spec holds the registry credential the actions use: it is written
0600 in a 0700 folder and the job removes it as soon as it has read it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from actions import push
from state.settings import BasicAuth
from workload.client_identity import ClientIdentity
from workload.machine import Machine
from workload.registry_api import LocalAccess

logger = logging.getLogger(__name__)

JOB = "docker-registry-import"
"""The transient systemd unit the import runs as."""
RESOURCE = "images"
STATE_DIR = "var/lib/charm-docker-registry/import"
"""Under the unit's root: the job's spec and its progress file."""
_CHUNK = 1024 * 1024
STATUS_REASON = 120
"""The status quotes this much of the first failure; the journal has every one."""


@dataclass(frozen=True)
class ImportSpec:
    """What the job imports, and how it reaches the registry (as the actions do)."""

    resource: str
    digest: str
    netloc: str
    access: LocalAccess
    namespace: str = ""
    parallel: int = 4


@dataclass(frozen=True)
class Progress:
    """How far the import of one resource content (by digest) is; what the job writes."""

    digest: str
    state: Literal["running", "done", "failed"] = "running"
    done: int = 0
    total: int = 0
    failed: int = 0
    message: str = ""

    def status_text(self) -> str:
        """The import as the unit's status tells it."""
        source = f"from the {RESOURCE} resource ({self.digest[:19]})"
        if self.state == "running":
            counts = push.progress_text("Importing", self.done, self.total, self.failed)
            return f"{counts} {source}"
        if self.state == "done":
            return f"Imported {self.total} images {source}"
        return f"Import {source} failed: {self.message}; see journalctl -u {JOB}"


def state_dir(root: Path) -> Path:
    """The folder of the job's spec and progress, root-only."""
    folder = root / STATE_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def file_digest(path: Path) -> str:
    """The sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def read_progress(folder: Path) -> Progress | None:
    """The last import's progress; None if there was none (or it cannot be read)."""
    try:
        return Progress(**json.loads((folder / "progress.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_progress(folder: Path, progress: Progress) -> None:
    """Replace the progress file at once: a hook never reads half of it."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".progress-")
    with os.fdopen(fd, "w") as f:
        json.dump(dataclasses.asdict(progress), f)
    os.chmod(name, 0o644)
    os.replace(name, folder / "progress.json")


def write_spec(folder: Path, spec: ImportSpec) -> Path:
    """The job's spec (mode 0600: it holds the registry credential)."""
    access = spec.access
    data = {
        **dataclasses.asdict(spec),
        "access": {
            **{f.name: getattr(access, f.name) for f in dataclasses.fields(access)},
            "credentials": dataclasses.asdict(access.credentials) if access.credentials else None,
            "client": str(access.client.folder) if access.client else None,
        },
    }
    path = folder / "spec.json"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    return path


def import_if_new(
    machine: Machine,
    resource: Path,
    *,
    namespace: str,
    netloc: str,
    access: Callable[[], LocalAccess],
    attached: bool,
) -> None:
    """Start importing the resource file when its content (or the namespace) is new.

    Nothing happens while an import runs (a later hook starts the next),
    for an empty resource, or for content imported before, unless that
    import failed and the resource was `attached` again (upgrade-charm).
    """
    if not resource.is_file() or resource.stat().st_size == 0 or machine.running(JOB):
        return
    folder = state_dir(machine.root)
    digest = _content_digest(folder, resource)
    last = last_import(machine)
    retry = attached and last is not None and last.state == "failed"
    imported = folder / "imported"
    key = f"{digest} {namespace}"
    if not retry and imported.exists() and imported.read_text() == key:
        return
    failure = _start(machine, ImportSpec(str(resource), digest, netloc, access(), namespace))
    if failure:
        logger.error("images resource: %s", failure)
        return
    imported.write_text(key)
    logger.info("importing the images resource (%s) in %s", digest, JOB)


def _content_digest(folder: Path, resource: Path) -> str:
    """The resource's sha256, computed again only when the file changed."""
    stat = resource.stat()
    seen = [str(resource), stat.st_size, stat.st_mtime_ns, stat.st_ino]
    cache = folder / "resource-digest.json"
    try:
        cached = json.loads(cache.read_text())
        if cached["file"] == seen:
            return str(cached["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = file_digest(resource)
    cache.write_text(json.dumps({"file": seen, "digest": digest}))
    return digest


def last_import(machine: Machine) -> Progress | None:
    """How the last import went (or goes); None if there was none.

    A job that ended without saying how (killed, the unit rebooted) failed.
    """
    progress = read_progress(machine.root / STATE_DIR)
    if progress and progress.state == "running" and not machine.running(JOB):
        stopped = f"it stopped at {progress.done}/{progress.total}"
        return dataclasses.replace(progress, state="failed", message=stopped)
    return progress


def _start(machine: Machine, spec: ImportSpec) -> str | None:
    """Start the job importing `spec`; why it could not start, if it could not (also recorded).

    It runs this module with the hook's own interpreter and import path.
    """
    folder = state_dir(machine.root)
    spec_path = write_spec(folder, spec)
    write_progress(folder, Progress(spec.digest))
    import_path = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
    argv = [sys.executable, "-m", __name__, str(spec_path)]
    try:
        machine.start_job(JOB, argv, {"PYTHONPATH": import_path})
    except (OSError, subprocess.SubprocessError) as e:
        spec_path.unlink(missing_ok=True)
        failure = f"cannot start {JOB}: {e}"
        write_progress(folder, Progress(spec.digest, "failed", message=failure))
        return failure
    return None


def _read_spec(path: Path) -> ImportSpec:
    data = json.loads(path.read_text())
    access = data.pop("access")
    credentials = access.pop("credentials")
    client = access.pop("client")
    return ImportSpec(
        **data,
        access=LocalAccess(
            **access,
            credentials=BasicAuth(**credentials) if credentials else None,
            client=ClientIdentity(Path(client)) if client else None,
        ),
    )


def run(spec_path: Path) -> int:
    """The job: import the resource, writing progress beside the spec; 0 if every image went."""
    folder = spec_path.parent
    spec = _read_spec(spec_path)
    spec_path.unlink()
    write_progress(folder, Progress(spec.digest))
    try:
        copies = push.plan_copies(spec.resource, namespace=spec.namespace)
    except push.InvalidPushError as e:
        write_progress(folder, Progress(spec.digest, "failed", message=str(e)))
        print(f"import failed: {e}", flush=True)
        return 1

    def progress(done: int, total: int, failed: int) -> None:
        write_progress(folder, Progress(spec.digest, "running", done, total, failed))

    # Unpacked in a folder of the charm's, not beside the resource in Juju's.
    work = folder / "work"
    work.mkdir(mode=0o700, exist_ok=True)
    outcomes = push.push_images(
        copies,
        spec.access,
        push.SourceAuth(),
        netloc=spec.netloc,
        parallel=spec.parallel,
        log=lambda line: print(line, flush=True),
        temp_dir=str(work),
        progress=progress,
    )
    _, failure = push.action_results(outcomes)
    failed = [o for o in outcomes if o.error]
    first = f" (the first: {failed[0].error[:STATUS_REASON]})" if failed else ""
    final = Progress(
        spec.digest,
        "failed" if failure else "done",
        len(outcomes),
        len(outcomes),
        len(failed),
        message=f"{len(failed)} of {len(outcomes)} images failed{first}" if failure else "",
    )
    write_progress(folder, final)
    print(failure or f"imported {len(outcomes)} images", flush=True)
    return 1 if failure else 0


if __name__ == "__main__":  # pragma: nocover
    sys.exit(run(Path(sys.argv[1])))
