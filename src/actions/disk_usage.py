"""The disk-usage action: where the registry's space goes.

Repositories, tags and the blobs their manifests reference come from the
registry API (so this works on object storage too). A blob (layer, config
or manifest) is stored once however many repositories reference it: the
total counts it once, and each repository shows how much of its size it
shares with others. Manifests no tag points to, and blobs no manifest
references (what garbage collection frees), are invisible to the API: on
filesystem storage they are read from the registry's layout
(`workload/storage_layout.py`); on object storage they are reported unknown.
Results stay small: the largest N repositories, tags and untagged manifests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from workload import storage_layout
from workload.registry_api import RegistryClient

UNKNOWN = "unknown (object storage: the registry API cannot list them)"


@dataclass(frozen=True, kw_only=True)
class DiskUsageParams:
    """The disk-usage action's parameters."""

    top: int = 10


@dataclass(frozen=True)
class ManifestBlobs:
    """A manifest (or index, with its children) and every blob it needs: digest -> bytes."""

    digest: str
    blobs: dict[str, int]
    children: tuple[str, ...] = ()
    """The manifests an index names (they are among `blobs` too)."""

    @property
    def size(self) -> int:
        """Bytes of the manifest and everything it references."""
        return sum(self.blobs.values())


class ManifestReader:
    """Reads manifests through the API, once per digest (they are content-addressed)."""

    def __init__(self, client: RegistryClient):
        self.client = client
        self._by_digest: dict[str, ManifestBlobs] = {}

    def read(self, repository: str, reference: str) -> ManifestBlobs | None:
        """The manifest a tag or digest names, with its children's blobs; None if absent."""
        if reference in self._by_digest:
            return self._by_digest[reference]
        manifest = self.client.manifest(repository, reference)
        if manifest is None:
            return None
        if manifest.digest in self._by_digest:
            return self._by_digest[manifest.digest]
        blobs = {manifest.digest: manifest.size, **manifest.blobs()}
        for child in manifest.children():
            child_blobs = self.read(repository, child)
            if child_blobs is not None:
                blobs.update(child_blobs.blobs)
        found = ManifestBlobs(manifest.digest, blobs, tuple(manifest.children()))
        self._by_digest[manifest.digest] = found
        return found


def merged(blob_maps: Iterable[dict[str, int]]) -> dict[str, int]:
    """The union of blob maps (digest -> bytes): a blob counts once."""
    union: dict[str, int] = {}
    for blobs in blob_maps:
        union.update(blobs)
    return union


@dataclass
class RepositoryUsage:
    """One repository: its tags, its untagged manifests and the blobs they reference."""

    name: str
    tags: dict[str, ManifestBlobs] = field(default_factory=dict)
    untagged: list[ManifestBlobs] = field(default_factory=list)

    def blobs(self) -> dict[str, int]:
        """Every blob its manifests reference, tagged or not."""
        return merged(m.blobs for m in [*self.tags.values(), *self.untagged])

    def tagged_blobs(self) -> dict[str, int]:
        """Every blob its tagged manifests reference."""
        return merged(m.blobs for m in self.tags.values())


@dataclass(frozen=True)
class Usage:
    """The whole registry; `stored` (blobs in the storage) is None on object storage."""

    repositories: list[RepositoryUsage]
    stored: dict[str, int] | None

    def referenced(self) -> dict[str, int]:
        """Every blob some manifest (tagged or not) references."""
        return merged(r.blobs() for r in self.repositories)

    def tagged(self) -> dict[str, int]:
        """Every blob some tagged manifest references."""
        return merged(r.tagged_blobs() for r in self.repositories)

    def owners(self) -> dict[str, int]:
        """How many repositories reference each blob."""
        counts: dict[str, int] = {}
        for repository in self.repositories:
            for digest in repository.blobs():
                counts[digest] = counts.get(digest, 0) + 1
        return counts

    def garbage(self) -> int | None:
        """Bytes garbage collection frees now; None when the storage cannot be read."""
        if self.stored is None:
            return None
        referenced = self.referenced()
        return sum(size for digest, size in self.stored.items() if digest not in referenced)

    def untagged_only(self) -> int:
        """Bytes of blobs only untagged manifests reference: deleting them frees these."""
        tagged = self.tagged()
        return sum(size for digest, size in self.referenced().items() if digest not in tagged)


def measure(client: RegistryClient, data_dir: Path | None, log: Callable[[str], None]) -> Usage:
    """Read every repository, tag and manifest; untagged ones and garbage from the disk."""
    reader = ManifestReader(client)
    repositories = []
    for name in client.catalog():
        repository = RepositoryUsage(name)
        for tag in sorted(client.tags(name)):
            manifest = reader.read(name, tag)
            if manifest is not None:
                repository.tags[tag] = manifest
        if data_dir is not None:
            reachable = {d for m in repository.tags.values() for d in m.blobs}
            for digest in sorted(storage_layout.manifest_revisions(data_dir, name) - reachable):
                manifest = reader.read(name, digest)
                if manifest is not None:
                    repository.untagged.append(manifest)
        repositories.append(repository)
    log(f"read {len(repositories)} repositories")
    stored = storage_layout.blob_sizes(data_dir) if data_dir is not None else None
    return Usage(repositories, stored)


def human(size: int) -> str:
    """Bytes in binary units, one decimal."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def results(usage: Usage, top: int) -> dict:
    """The action's results: totals as byte counts, the largest N of each kind as lines."""
    owners = usage.owners()
    referenced = usage.referenced()
    per_repository = []
    for repository in usage.repositories:
        blobs = repository.blobs()
        shared = sum(size for digest, size in blobs.items() if owners[digest] > 1)
        per_repository.append((sum(blobs.values()), shared, repository.name))
    per_repository.sort(key=lambda row: (-row[0], row[2]))
    tags = sorted(
        (
            (manifest.size, f"{repository.name}:{tag}")
            for repository in usage.repositories
            for tag, manifest in repository.tags.items()
        ),
        key=lambda row: (-row[0], row[1]),
    )
    untagged = sorted(
        (
            (manifest.size, f"{repository.name}@{manifest.digest}")
            for repository in usage.repositories
            for manifest in repository.untagged
        ),
        key=lambda row: (-row[0], row[1]),
    )
    shared_total = sum(size for digest, size in referenced.items() if owners[digest] > 1)
    found = {
        "outcome": "success",
        "accounting": (
            "repositories, tags and blob sizes: registry API; "
            + (
                "untagged manifests and garbage: the filesystem storage"
                if usage.stored is not None
                else "untagged manifests and garbage: unknown on object storage"
            )
        ),
        "total-bytes": sum(referenced.values()),
        "shared-bytes": shared_total,
        "repository-count": len(per_repository),
        "tag-count": len(tags),
        "repositories": "\n".join(
            f"{name} {size} ({human(size)}, {human(shared)} shared)"
            for size, shared, name in per_repository[:top]
        ),
        "tags": "\n".join(f"{name} {size} ({human(size)})" for size, name in tags[:top]),
    }
    garbage = usage.garbage()
    if usage.stored is None or garbage is None:
        return found | {"untagged-count": UNKNOWN, "garbage-bytes": UNKNOWN}
    return found | {
        "untagged-count": len(untagged),
        "untagged-bytes": usage.untagged_only(),
        "untagged": "\n".join(f"{name} {size} ({human(size)})" for size, name in untagged[:top]),
        "garbage-bytes": garbage,
        "stored-bytes": sum(usage.stored.values()),
    }
