"""The images and rmi actions: what the registry holds, read and changed through its API.

A site's registry holds tens of thousands of repositories: `images` pages
through them (`offset`, `limit`, in catalog order, so that only the page's
tags are asked for), and both actions keep their lists within what Juju can
take (see `actions/results.py`). Repositories without tags (emptied by rmi;
the registry keeps listing them until their folders go) are counted, not
listed: they hold no image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from actions.push import InvalidReferenceError, Reference, parse_own_reference
from actions.results import fit_lines, list_results
from workload.registry_api import RegistryAPIError, RegistryClient

DELETE_DISABLED = (
    "the registry does not allow deleting (storage-delete is off); "
    "run: juju config docker-registry storage-delete=true"
)


class ImagesError(ValueError):
    """A parameter or registry answer that stops the action; the message says why."""


@dataclass(frozen=True, kw_only=True)
class ImagesParams:
    """The images action's parameters; `options` is kept for compatibility only."""

    repository: str = ""
    digests: bool = False
    offset: int = 0
    limit: int = 0
    options: str = ""


@dataclass(frozen=True, kw_only=True)
class RmiParams:
    """The rmi action's parameters; `options` is kept for compatibility only."""

    image: str
    options: str = ""


@dataclass(frozen=True)
class ImageEntry:
    """One tag of a repository and, when asked for, the digest it points at."""

    repository: str
    tag: str
    digest: str = ""

    def __str__(self) -> str:
        line = f"{self.repository}:{self.tag}"
        return f"{line} {self.digest}" if self.digest else line


def own_reference(text: str, own_netlocs: tuple[str, ...]) -> Reference:
    """Parse a reference to an image in this registry, with or without its netloc."""
    try:
        return parse_own_reference(text, own_netlocs)
    except InvalidReferenceError as e:
        raise ImagesError(str(e)) from None


@dataclass(frozen=True)
class Listing:
    """One page of the registry's repositories and the tags they hold."""

    entries: list[ImageEntry]
    repositories: int
    """Repositories in the registry (1 when one was asked for)."""
    offset: int = 0
    page: int = 0
    """Repositories in this page."""
    empty: list[str] = field(default_factory=list)
    """Repositories of the page without tags: counted, not listed."""

    @property
    def next_offset(self) -> int | None:
        """Where the next page starts; None on the last."""
        end = self.offset + self.page
        return end if end < self.repositories else None


def list_images(
    client: RegistryClient,
    *,
    repository: str = "",
    digests: bool = False,
    own_netlocs: tuple[str, ...] = (),
    offset: int = 0,
    limit: int = 0,
) -> Listing:
    """Each repository:tag of a page of repositories (`limit` 0: all), or of one repository."""
    if offset < 0 or limit < 0:
        raise ImagesError("offset and limit must be 0 or more")
    try:
        wanted = own_reference(repository, own_netlocs) if repository else None
    except ImagesError as e:
        raise ImagesError(f"repository: {e}") from None
    if wanted:
        catalog, offset = [wanted.path], 0
    else:
        catalog = client.catalog()
    page = catalog[offset : offset + limit] if limit else catalog[offset:]
    entries: list[ImageEntry] = []
    empty: list[str] = []
    for name in page:
        tags = sorted(client.tags(name))
        if not tags:
            empty.append(name)
        for tag in tags:
            if wanted and wanted.tag and tag != wanted.tag:
                continue
            digest = (client.manifest_digest(name, tag) or "") if digests else ""
            entries.append(ImageEntry(name, tag, digest))
    return Listing(entries, len(catalog), offset, len(page), empty)


@dataclass(frozen=True)
class Deletion:
    """What rmi did with one reference."""

    reference: str
    deleted: str = ""
    """repository@digest of the deleted manifest."""
    error: str = ""


def delete_images(
    client: RegistryClient,
    references: list[str],
    *,
    own_netlocs: tuple[str, ...],
    log: Callable[[str], None],
) -> list[Deletion]:
    """Delete each manifest named by repository:tag or repository@digest.

    A tag resolves to its manifest, so every tag pointing at that manifest
    goes with it: that is how the registry API deletes.
    """
    deletions = []
    for text in references:
        try:
            deletion = Deletion(text, deleted=_delete(client, own_reference(text, own_netlocs)))
            log(f"deleted {deletion.deleted}")
        except (ImagesError, RegistryAPIError) as e:
            reason = DELETE_DISABLED if getattr(e, "code", "") == "UNSUPPORTED" else str(e)
            deletion = Deletion(text, error=reason)
            log(f"{text}: {reason}")
        deletions.append(deletion)
    return deletions


def _delete(client: RegistryClient, reference: Reference) -> str:
    digest = reference.digest or client.manifest_digest(reference.path, reference.tag or "latest")
    if not digest:
        raise ImagesError(f"no such image in this registry: {reference.path}{reference.target}")
    client.delete_manifest(reference.path, digest)
    return f"{reference.path}@{digest}"


def listing_results(listing: Listing, netloc: str, *, root: Path) -> dict:
    """The images action's results: the registry, the page, and one line per tag."""
    results: dict = {
        "outcome": "success",
        "registry": netloc,
        "count": len(listing.entries),
        "repositories": listing.repositories,
        "empty-repositories": len(listing.empty),
    }
    next_offset = listing.next_offset
    if listing.offset or next_offset is not None:
        first, last = listing.offset + 1, listing.offset + listing.page
        results["page"] = f"repositories {first}-{last} of {listing.repositories}"
    if next_offset is not None:
        results["next-offset"] = next_offset
    lines = [str(entry) for entry in listing.entries]
    hint = "offset and limit list fewer repositories at a time"
    results.update(list_results("images", lines, root=root, action="images", next_hint=hint))
    return results


RAW_BUDGET = 4 * 1024
"""Bytes of rmi's `raw` line, which names the deletions only while they are few."""
FAILURE_REASONS = 10
"""Reasons an action failure message quotes; the `failed` result lists them all."""


def delete_results(deletions: list[Deletion], *, root: Path) -> tuple[dict, str | None]:
    """The rmi action's results and, if any reference failed, the failure message."""
    deleted = [d.deleted for d in deletions if not d.error]
    failed = [d for d in deletions if d.error]
    raw = f"deleted {', '.join(deleted)}" if deleted else "deleted nothing"
    if len(raw.encode()) > RAW_BUDGET:
        raw = f"deleted {len(deleted)} manifests (listed in deleted)"
    results: dict = {
        "outcome": "failure" if failed else "success",
        "raw": raw,
        "count": len(deleted),
        **list_results("deleted", deleted, root=root, action="rmi"),
    }
    if not failed:
        return results, None
    reasons = [f"{d.reference}: {d.error}" for d in failed]
    results.update(list_results("failed", reasons, root=root, action="rmi-failed"))
    quoted = fit_lines(reasons[:FAILURE_REASONS], RAW_BUDGET)
    more = len(failed) - quoted.shown
    message = "; ".join(reasons[: quoted.shown])
    if more:
        message += f"; and {more} more (see the failed result)"
    return results, f"{len(failed)} of {len(deletions)} deletions failed: {message}"
