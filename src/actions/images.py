"""The images and rmi actions: what the registry holds, read and changed through its API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from actions.push import InvalidReferenceError, Reference, parse_own_reference
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


def list_images(
    client: RegistryClient,
    *,
    repository: str = "",
    digests: bool = False,
    own_netlocs: tuple[str, ...] = (),
) -> list[ImageEntry]:
    """Every repository:tag, or those of one `repository[:tag]`, sorted."""
    try:
        wanted = own_reference(repository, own_netlocs) if repository else None
    except ImagesError as e:
        raise ImagesError(f"repository: {e}") from None
    repositories = [wanted.path] if wanted else client.catalog()
    entries = []
    for name in repositories:
        for tag in sorted(client.tags(name)):
            if wanted and wanted.tag and tag != wanted.tag:
                continue
            digest = (client.manifest_digest(name, tag) or "") if digests else ""
            entries.append(ImageEntry(name, tag, digest))
    return entries


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


def list_results(entries: list[ImageEntry], netloc: str) -> dict:
    """The images action's results: the registry and one line per tag."""
    return {
        "outcome": "success",
        "registry": netloc,
        "count": len(entries),
        "images": "\n".join(str(entry) for entry in entries),
    }


def delete_results(deletions: list[Deletion]) -> tuple[dict, str | None]:
    """The rmi action's results and, if any reference failed, the failure message."""
    deleted = [d.deleted for d in deletions if not d.error]
    failed = [d for d in deletions if d.error]
    results = {
        "outcome": "failure" if failed else "success",
        "raw": f"deleted {', '.join(deleted)}" if deleted else "deleted nothing",
        "deleted": "\n".join(deleted),
    }
    if not failed:
        return results, None
    reasons = "; ".join(f"{d.reference}: {d.error}" for d in failed)
    return results, f"{len(failed)} of {len(deletions)} deletions failed: {reasons}"
