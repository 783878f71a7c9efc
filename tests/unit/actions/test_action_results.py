"""Action results at a real site's scale go through ops' own `action-set` call.

ops runs `action-set key=value ...`; the kernel refuses any one argument over
128 KiB (MAX_ARG_STRLEN) before the program runs, so a fake `action-set` that
only exits 0 is enough to meet the real limit. The registry is an in-process
stand-in holding 20,000 repositories of 3 tags each: what the actions ask
of it is the same as of the real one (catalog, tags, digests, deletes).
"""

from __future__ import annotations

import hashlib
import os
import stat

import ops
import pytest
from ops import testing
from ops.model import _ModelBackend

from actions.garbage_collect import counts_line
from actions.results import KEEP_FILES, LIST_BUDGET, RESULTS_DIR, fit_lines, write_list
from charm_context import unit_state

REPOSITORIES = 20_000
TAGS = ("v1", "v2", "latest")
MAX_ARG_STRLEN = 32 * 4096


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


class SiteRegistry:
    """Answers like the registry API client, from a site-sized catalog held in memory."""

    def __init__(self, access, timeout: float = 30.0):
        self.repositories = {
            f"team-{i % 50:02d}/service-{i:05d}": list(TAGS) for i in range(REPOSITORIES)
        }
        self.requests = 0

    def catalog(self, page_size: int = 1000) -> list[str]:
        self.requests += -(-len(self.repositories) // page_size)
        return sorted(self.repositories)

    def tags(self, repository: str) -> list[str]:
        self.requests += 1
        return list(self.repositories.get(repository, []))

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        self.requests += 1
        if reference.startswith("sha256:"):
            return reference
        known = reference in self.repositories.get(repository, [])
        return digest(f"{repository}:{reference}") if known else None

    def delete_manifest(self, repository: str, manifest: str) -> None:
        self.requests += 1
        tags = self.repositories[repository]
        tags[:] = [t for t in tags if digest(f"{repository}:{t}") != manifest]

    def close(self) -> None:
        pass


@pytest.fixture
def site(monkeypatch) -> SiteRegistry:
    registry = SiteRegistry(None)
    monkeypatch.setattr("workload.registry_api.RegistryClient", lambda *a, **kw: registry)
    return registry


@pytest.fixture
def backend(tmp_path, monkeypatch) -> _ModelBackend:
    """ops' model backend, running a fake `action-set` first on PATH."""
    fake = tmp_path / "bin" / "action-set"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    return _ModelBackend(unit_name="docker-registry/0", model_name="m", model_uuid="u")


def test_the_fake_action_set_meets_the_kernels_argument_limit(backend):
    backend.action_set({"short": "x" * 1000})
    with pytest.raises((ops.ModelError, OSError), match="Argument list too long"):
        backend.action_set({"long": "x" * MAX_ARG_STRLEN})


def run_action(ctx, state, action: str, params: dict) -> dict:
    ctx.run(ctx.on.action(action, params=params), state)
    assert ctx.action_results is not None
    return ctx.action_results


def test_images_of_20000_repositories_fit_and_the_rest_is_in_a_file(
    ctx, port, machine, site, backend
):
    state = unit_state(port)
    results = run_action(ctx, state, "images", {"digests": True})
    backend.action_set(results)
    assert results["count"] == REPOSITORIES * len(TAGS)
    assert results["repositories"] == REPOSITORIES
    shown = results["images"].splitlines()
    assert len(results["images"].encode()) <= LIST_BUDGET
    assert results["images-cut"].startswith(f"showing the first {len(shown)} of 60000 lines")
    assert results["images-cut"].endswith("offset and limit list fewer repositories at a time")
    path = results["images-file"]
    assert path.startswith(str(machine.root)), "on the unit"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as listing:
        lines = listing.read().splitlines()
    assert len(lines) == REPOSITORIES * len(TAGS)
    assert lines[: len(shown)] == shown
    first = sorted(site.repositories)[0]
    assert lines[0] == f"{first}:latest {digest(f'{first}:latest')}"


def test_images_pages_ask_only_for_their_repositories_tags(ctx, port, site, backend):
    results = run_action(ctx, unit_state(port), "images", {"offset": 19_900, "limit": 500})
    backend.action_set(results)
    assert results["page"] == "repositories 19901-20000 of 20000"
    assert "next-offset" not in results
    assert results["count"] == 300
    assert "images-cut" not in results
    assert site.requests == 20 + 100, "20 catalog pages of 1,000, then 100 tag lists"

    results = run_action(ctx, unit_state(port), "images", {"limit": 10})
    assert results["next-offset"] == 10
    assert results["page"] == "repositories 1-10 of 20000"


def test_repositories_without_tags_are_counted_not_listed(ctx, port, site):
    emptied = sorted(site.repositories)[:3]
    for name in emptied:
        site.repositories[name] = []
    results = run_action(ctx, unit_state(port), "images", {"limit": 5})
    assert results["empty-repositories"] == 3
    assert results["count"] == 2 * len(TAGS)
    assert not any(line.startswith(tuple(emptied)) for line in results["images"].splitlines())


def test_rmi_of_5000_references_fits(ctx, port, machine, site, backend):
    state = unit_state(port, config={"storage-delete": True})
    names = sorted(site.repositories)[:5000]
    references = [f"{name}:v1" for name in names[:4990]] + [
        f"{name}:gone" for name in names[4990:]
    ]
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("rmi", params={"image": " ".join(references)}), state)
    results = ctx.action_results
    assert results is not None
    backend.action_set(results)
    assert len(failed.value.message.encode()) < MAX_ARG_STRLEN
    assert failed.value.message.startswith("10 of 5000 deletions failed: ")
    assert results["count"] == 4990
    assert results["raw"] == "deleted 4990 manifests (listed in deleted)"
    assert len(results["deleted"].encode()) <= LIST_BUDGET
    with open(results["deleted-file"]) as listing:
        deleted = listing.read().splitlines()
    assert deleted[0] == f"{names[0]}@{digest(f'{names[0]}:v1')}"
    assert len(deleted) == 4990
    assert "failed-cut" not in results, "10 reasons fit"
    assert site.repositories[names[0]] == ["v2", "latest"]


def test_only_the_newest_list_files_are_kept(tmp_path):
    paths = [write_list(tmp_path, f"images-{i}", ["a"]) for i in range(KEEP_FILES + 5)]
    kept = sorted((tmp_path / RESULTS_DIR).iterdir())
    assert len(kept) == KEEP_FILES
    assert paths[-1] in kept


def test_fit_lines_counts_bytes_not_characters():
    fitted = fit_lines(["é" * 10, "b"], budget=20)
    assert (fitted.text, fitted.shown, fitted.total) == ("é" * 10, 1, 2)
    assert fit_lines([], budget=1).cut is False


def test_garbage_collect_reports_the_registrys_counts_line():
    output = [
        "blob eligible for deletion: sha256:" + "a" * 64,
        'time="2026-12-03T08:00:00Z" level=info msg="Deleting blob: /docker/..."',
        "",
        "2502 blobs marked, 2500 blobs and 0 manifests eligible for deletion",
        "blob eligible for deletion: sha256:" + "b" * 64,
    ]
    assert counts_line(output) == (
        "2502 blobs marked, 2500 blobs and 0 manifests eligible for deletion"
    )
    assert counts_line(["blob eligible for deletion: sha256:" + "c" * 64]) == ""
