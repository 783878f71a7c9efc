"""The apply-retention action: delete what `retention-policy` expires, through the registry API.

The registry's API gives tags and manifests but not when they were pushed
(an image config's `created` is when it was built, often long before, and
identical for reproducible builds): push times come from the filesystem
storage, the mtime of the tag's `current/link` (rewritten at every push of
the tag) and of the manifest's revision `link` (written when it was pushed
to the repository). So the policy needs filesystem storage. Deleting goes
through the API only (never files behind the registry's back); the disk is
freed by the next garbage collection, by the bytes this action predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from actions.disk_usage import (
    ManifestBlobs,
    RepositoryUsage,
    Usage,
    human,
    measure,
    merged,
)
from actions.images import DELETE_DISABLED
from state.plan import RegistryPlan
from state.retention import RepositoryContents, RetentionRule, expire, rule_for
from workload import storage_layout
from workload.registry_api import RegistryAPIError, RegistryClient

LISTED = 200
"""At most this many deletions are listed one per line (results stay small)."""


class RetentionError(RuntimeError):
    """The policy cannot run; the message says why."""


@dataclass(frozen=True, kw_only=True)
class ApplyRetentionParams:
    """The apply-retention action's parameters."""

    dry_run: bool = True


@dataclass(frozen=True)
class Planned:
    """A manifest the policy deletes, and why."""

    repository: str
    manifest: ManifestBlobs
    reason: str

    def __str__(self) -> str:
        return f"{self.repository}@{self.manifest.digest} ({self.reason})"


@dataclass(frozen=True)
class RetentionPlan:
    """Every manifest the policy deletes, the bytes that frees, and tags it cannot delete."""

    deletions: tuple[Planned, ...]
    bytes_freed: int
    held: tuple[str, ...]


def plan_retention(
    client: RegistryClient,
    plan: RegistryPlan,
    rules: tuple[RetentionRule, ...],
    now: float,
    log: Callable[[str], None],
) -> RetentionPlan:
    """What the policy deletes now, read through the API and the storage's push times."""
    if not rules:
        raise RetentionError("no retention-policy is set")
    if plan.data_dir is None:
        raise RetentionError(
            "retention-policy needs filesystem storage: the registry API does not tell "
            "when a tag was pushed, nor list untagged manifests, on object storage"
        )
    usage = measure(client, plan.data_dir, log)
    deletions, held = [], []
    for repository in usage.repositories:
        rule = rule_for(rules, repository.name)
        if rule is None:
            continue
        expiry = expire(rule, contents(plan.data_dir, repository, now), now)
        by_digest = {m.digest: m for m in [*repository.tags.values(), *repository.untagged]}
        by_digest |= {child: ManifestBlobs(child, {}) for child in _children(by_digest)}
        deletions += [
            Planned(repository.name, by_digest[digest], why)
            for digest, why in expiry.manifests.items()
        ]
        held += [f"{repository.name}:{tag}" for tag in expiry.held]
    return RetentionPlan(tuple(deletions), freed_bytes(usage, deletions), tuple(held))


def _children(manifests: dict[str, ManifestBlobs]) -> set[str]:
    """The platform manifests the indexes name that are not among `manifests` themselves."""
    return {c for m in manifests.values() for c in m.children if c not in manifests}


def contents(data_dir: Path, repository: RepositoryUsage, now: float) -> RepositoryContents:
    """A repository's tags and untagged manifests with their push times, for the policy."""
    name = repository.name
    manifests = [*repository.tags.values(), *repository.untagged]
    return RepositoryContents(
        tags={
            tag: (m.digest, storage_layout.tag_pushed_at(data_dir, name, tag) or now)
            for tag, m in repository.tags.items()
        },
        untagged={
            m.digest: storage_layout.manifest_pushed_at(data_dir, name, m.digest) or now
            for m in repository.untagged
        },
        children={m.digest: m.children for m in manifests if m.children},
    )


def freed_bytes(usage: Usage, deletions: list[Planned]) -> int:
    """Bytes of the blobs only the deleted manifests reference (garbage collection frees them)."""
    deleted = {(d.repository, d.manifest.digest) for d in deletions}
    kept = merged(
        m.blobs
        for r in usage.repositories
        for m in [*r.tags.values(), *r.untagged]
        if (r.name, m.digest) not in deleted
    )
    gone = merged(d.manifest.blobs for d in deletions)
    return sum(size for digest, size in gone.items() if digest not in kept)


def apply_retention(
    client: RegistryClient, retention: RetentionPlan, log: Callable[[str], None]
) -> list[str]:
    """Delete the planned manifests through the API; the failures, each with why.

    Raises RetentionError at once when the registry does not allow deleting.
    """
    failures = []
    for deletion in retention.deletions:
        try:
            client.delete_manifest(deletion.repository, deletion.manifest.digest)
            log(f"deleted {deletion}")
        except RegistryAPIError as e:
            if e.code == "UNSUPPORTED":
                raise RetentionError(DELETE_DISABLED) from None
            if e.status == 404:  # deleted meanwhile
                continue
            failures.append(f"{deletion.repository}@{deletion.manifest.digest}: {e}")
    return failures


def results(retention: RetentionPlan, *, dry_run: bool, failures: list[str]) -> dict:
    """The action's results: what was (or would be) deleted and the bytes that frees."""
    lines = [str(d) for d in retention.deletions[:LISTED]]
    if len(retention.deletions) > LISTED:
        lines.append(f"... and {len(retention.deletions) - LISTED} more")
    found = {
        "outcome": "failure" if failures else "success",
        "dry-run": dry_run,
        "count": len(retention.deletions),
        "bytes-freed": retention.bytes_freed,
        "summary": (
            f"{'would delete' if dry_run else 'deleted'} {len(retention.deletions)} manifests, "
            f"freeing {human(retention.bytes_freed)} at the next garbage collection"
        ),
        "deletions": "\n".join(lines),
    }
    if retention.held:
        found["held"] = "\n".join(
            f"{tag} (expired, but its manifest is also a kept tag's)"
            for tag in retention.held[:LISTED]
        )
    if failures:
        found["failures"] = "\n".join(failures[:LISTED])
    return found
