"""What the registry's filesystem storage holds, read where its API cannot tell.

Distribution's API lists repositories and tags, and serves manifests and
blobs by digest, but it cannot list manifests no tag points to, nor blobs no
manifest references, nor say when a tag was pushed. On filesystem storage
the charm reads these from the registry's own layout (read only, never
changed: deleting goes through the API, and `garbage-collect`):

    docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
    docker/registry/v2/blobs/sha256/<hex[:2]>/<hex>/data
"""

from __future__ import annotations

import os
from pathlib import Path

V2 = "docker/registry/v2"


def _repository_dir(data_dir: Path, repository: str) -> Path | None:
    """The repository's folder; None for a name that would leave the storage."""
    parts = repository.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return data_dir / V2 / "repositories" / repository


def manifest_revisions(data_dir: Path, repository: str) -> set[str]:
    """The digests of every manifest the repository holds, tagged or not."""
    folder = _repository_dir(data_dir, repository)
    if folder is None:
        return set()
    revisions = folder / "_manifests/revisions/sha256"
    try:
        entries = list(revisions.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return set()
    return {f"sha256:{entry.name}" for entry in entries if (entry / "link").is_file()}


def tag_pushed_at(data_dir: Path, repository: str, tag: str) -> float | None:
    """When the tag was last pushed: its `current/link`, rewritten at each push."""
    if "/" in tag or tag in (".", ".."):
        return None
    return _modified(data_dir, repository, f"_manifests/tags/{tag}/current/link")


def manifest_pushed_at(data_dir: Path, repository: str, digest: str) -> float | None:
    """When the manifest was pushed to the repository: its revision's `link`."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or not hexdigest.isalnum():
        return None
    return _modified(data_dir, repository, f"_manifests/revisions/sha256/{hexdigest}/link")


def _modified(data_dir: Path, repository: str, path: str) -> float | None:
    folder = _repository_dir(data_dir, repository)
    if folder is None:
        return None
    try:
        return (folder / path).stat().st_mtime
    except OSError:
        return None


def blob_sizes(data_dir: Path) -> dict[str, int]:
    """Every blob in the storage (layers, configs and manifests): digest -> bytes."""
    sizes = {}
    for folder, _, files in os.walk(data_dir / V2 / "blobs/sha256"):
        if "data" not in files:
            continue
        try:
            sizes[f"sha256:{os.path.basename(folder)}"] = os.lstat(
                os.path.join(folder, "data")
            ).st_size
        except FileNotFoundError:
            continue
    return sizes
