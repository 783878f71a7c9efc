"""The push action: copy images into this unit's registry with skopeo.

Sources are registry references, image files and bundles on the unit (for
air-gapped sites; see `bundles.py`) and lists of references. Every copy
preserves digests (`--preserve-digests --all`), so the pushed manifest
digest equals the source's. Credentials reach skopeo only
through 0600 auth files in a private temporary directory, never on its
command line, and are scrubbed from any error text.

Speed: a batch's fixed cost per image (a skopeo process, a dozen registry
requests each doing filesystem work) dominates once the bytes are on the
wire, so copies run concurrently. The first image goes alone: layers it
shares with the rest (a common base) are then in the registry and in
skopeo's blob-info cache, and the other copies mount them instead of
uploading them again. bench/push.py measures this; see docs/explanation/performance.md.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from actions.bundles import (
    Bundle,
    BundleError,
    BundleImage,
    PackageStream,
    read_bundle,
    read_package,
    size_text,
    unpacked,
)
from state.settings import BasicAuth
from workload.registry_api import MANIFEST_TYPES, LocalAccess, RegistryAPIError, RegistryClient

COPY_TIMEOUT = 3600.0
STATUS_AFTER = 60.0
"""A push running longer than this shows its progress in the unit's status too."""
STATUS_EVERY = 10.0
FILE_TRANSPORTS = ("oci-archive", "docker-archive", "oci")
DOCKER_HUB = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$"
)
_SKOPEO_MESSAGE = re.compile(r'level=fatal msg="(.*)"\s*$', re.S)
_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


class InvalidPushError(ValueError):
    """The push parameters as a whole are wrong (nothing was copied)."""


class InvalidReferenceError(ValueError):
    """One image reference is wrong; that image fails alone."""


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: domain (may be empty), repository path, tag, digest."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def target(self) -> str:
        """The ":tag", "@digest" or both that follow the repository."""
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_reference(text: str) -> Reference:
    """Parse `[domain/]path[:tag][@digest]` as Docker does; raise InvalidReferenceError."""
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidReferenceError(f"invalid digest {digest!r}")
    name, tag = rest, ""
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReferenceError(f"invalid tag {tag!r}")
    first, slash, remainder = name.partition("/")
    domain = ""
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN.match(first):
            raise InvalidReferenceError(f"invalid registry host {first!r}")
        domain, name = first, remainder
    if not _PATH.match(name):
        raise InvalidReferenceError(
            f"invalid repository name {name!r} (lowercase letters, digits, . _ - and /)"
        )
    return Reference(domain, name, tag, digest)


@dataclass(frozen=True)
class ImageCopy:
    """One image of a push: where from, where to (repository[:tag|@digest])."""

    source: str
    """What the operator wrote (and, for one image of a bundle, which)."""
    transport_ref: str = ""
    """The source as skopeo takes it (docker://...); for a bundle, known once unpacked."""
    destination: str = ""
    source_registry: str = ""
    """Host the source credentials are for; empty for files."""
    error: str = ""
    """Why this image cannot be copied (found before copying)."""
    bundle: Bundle | None = None
    """The file or layout this image comes from."""
    bundle_image: BundleImage | None = None
    copy_all: bool = True
    """Copy every platform (`--all`); off for an index whose other platforms are missing."""


@dataclass(frozen=True, kw_only=True)
class PushParams:
    """The push action's parameters (defaults as in actions.yaml)."""

    image: str
    tag: str = ""
    pull: bool = True
    namespace: str = ""
    source_username: str = ""
    source_password: str = field(default="", repr=False)
    source_tls_verify: bool = True
    parallel: int = 4
    temp_dir: str = ""


@dataclass(frozen=True, kw_only=True)
class BundleImagesParams:
    """The bundle-images action's parameters."""

    path: str
    namespace: str = ""


@dataclass(frozen=True)
class SourceAuth:
    """How to read registry sources: optional credentials and TLS verification."""

    username: str = ""
    password: str = field(default="", repr=False)
    tls_verify: bool = True


@dataclass(frozen=True)
class PushOutcome:
    """What happened to one image."""

    source: str
    destination: str = ""
    digest: str = ""
    error: str = ""
    size: int = 0
    """The image's bytes (manifests, configs, layers of every platform); 0 if unknown."""
    seconds: float = 0.0
    """How long its copy took."""
    already_there: bool = False
    """The registry held it (the same digest under the same name): not copied."""

    def line(self) -> str:
        """One log line for people: what went where, how big, how fast."""
        if self.error:
            return f"{self.source}: failed: {self.error}"
        if self.already_there:
            return f"{self.source} -> {self.destination} {self.digest} (already there)"
        took = f"{self.seconds:.1f} s"
        if self.size:
            rate = size_text(int(self.size / max(self.seconds, 0.001)))
            took = f"{size_text(self.size)} in {took}, {rate}/s"
        return f"{self.source} -> {self.destination} {self.digest} ({took})"


def plan_copies(
    images: str, *, tag: str = "", namespace: str = "", own_netlocs: tuple[str, ...] = ()
) -> list[ImageCopy]:
    """The copies a push asks for; a bad entry becomes an ImageCopy with an error.

    `images` holds references, files on the unit (each image of a bundle
    becomes one copy) and `@/path` lists of references. `tag` names the
    destination of a single image and may start with one of `own_netlocs`
    (as the established charm took it).
    """
    sources = [source for token in images.split() for source in _expand_list(token)]
    if not sources:
        raise InvalidPushError("image: give at least one image reference")
    namespace = namespace.strip("/")
    if namespace and not _PATH.match(namespace):
        raise InvalidPushError(
            f"namespace: {namespace!r} is not a repository path"
            " (lowercase letters, digits, . _ - and /)"
        )
    try:
        destination_override = parse_own_reference(tag, own_netlocs) if tag else None
    except InvalidReferenceError as e:
        raise InvalidPushError(f"tag: {e}") from None
    copies = [
        copy
        for source in sources
        for copy in _plan_source(source, destination_override, namespace)
    ]
    if tag and len(copies) > 1:
        raise InvalidPushError(
            "tag: names the destination of one image; use namespace for several"
        )
    return _refuse_collisions(copies)


def _refuse_collisions(copies: list[ImageCopy]) -> list[ImageCopy]:
    """An image whose destination another image of the push has already fails.

    Images from two registries with the same path (gcr.io/a:1, quay.io/a:1)
    land at the same place; copied at once, which one won would be chance.
    """
    first: dict[str, str] = {}
    checked = []
    for copy in copies:
        if not copy.error and copy.destination in first:
            copy = dataclasses.replace(
                copy,
                error=f"lands at {copy.destination} as {first[copy.destination]} does;"
                " push it separately, under another namespace",
            )
        elif not copy.error:
            first[copy.destination] = copy.source
        checked.append(copy)
    return checked


def _expand_list(token: str) -> list[str]:
    """`@/path/images.txt`: the references in that file, one or more a line, # comments."""
    if not token.startswith("@"):
        return [token]
    path = Path(token[1:])
    if not path.is_absolute():
        raise InvalidPushError(f"image: {token}: give the list file's absolute path")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidPushError(f"image: cannot read the list {path}: {e}") from None
    listed = [word for line in text.splitlines() for word in line.split("#", 1)[0].split()]
    nested = [word for word in listed if word.startswith("@")]
    if nested:
        raise InvalidPushError(f"image: {path} names another list ({nested[0]}); give it directly")
    return listed


def parse_own_reference(text: str, own_netlocs: tuple[str, ...]) -> Reference:
    """A reference to an image in this registry, with or without one of its netlocs."""
    for netloc in own_netlocs:
        if text.startswith(f"{netloc}/"):
            text = text[len(netloc) + 1 :]
            break
    reference = parse_reference(text)
    if reference.domain:
        raise InvalidReferenceError(f"names another registry ({reference.domain})")
    return reference


def _plan_source(source: str, destination: Reference | None, namespace: str) -> list[ImageCopy]:
    """The copies of one source: one image, or every image of a bundle."""
    try:
        file_source = _file_source(source)
        if file_source is not None:
            return _bundle_copies(source, *file_source, destination, namespace)
        reference = parse_reference(source.removeprefix("docker://"))
        registry = reference.domain or DOCKER_HUB
        transport_ref = f"docker://{registry}/{_hub_path(reference)}{reference.target}"
        destination_path = _destination(destination or reference, namespace)
        return [ImageCopy(source, transport_ref, destination_path, registry)]
    except (InvalidReferenceError, BundleError) as e:
        return [ImageCopy(source, error=str(e))]


def _destination(reference: Reference, namespace: str) -> str:
    """repository[:tag|@digest] under `namespace`; an image without either is :latest."""
    target = reference.target or ":latest"
    path = f"{namespace}/{reference.path}" if namespace else reference.path
    return f"{path}{target}"


def _hub_path(reference: Reference) -> str:
    """Docker Hub's official images live under library/."""
    if reference.domain in ("", DOCKER_HUB) and "/" not in reference.path:
        return f"library/{reference.path}"
    return reference.path


def _file_source(source: str) -> tuple[str, Path, str] | None:
    """(transport, path, name wanted) of a file on the unit; None for a registry reference."""
    transport, _, rest = source.partition(":")
    if transport in FILE_TRANSPORTS and rest:
        path_text, _, name = rest.partition(":")
    elif source.startswith("/"):
        transport = ""
        path_text, _, name = source.partition(":")
    else:
        return None
    path = Path(path_text)
    if not path.is_absolute():
        raise InvalidReferenceError(
            f"{transport or 'file'}: give an absolute path, not {path_text!r}"
        )
    if not path.exists():
        raise InvalidReferenceError(f"no such file on the unit: {path_text}")
    return transport, path, name


def _bundle_copies(
    source: str,
    transport: str,
    path: Path,
    wanted: str,
    destination: Reference | None,
    namespace: str,
) -> list[ImageCopy]:
    """One copy per image of the bundles a file or folder holds (or the one named `wanted`).

    With a transport (`oci-archive:` ...) the file is that one bundle; a
    bare path is looked into for every bundle it holds.
    """
    bundles = (read_bundle(path, transport),) if transport else read_package(path)
    found = [(bundle, image) for bundle in bundles for image in bundle.images]
    images = [(b, i) for b, i in found if not wanted or wanted in (i.reference, i.tag)]
    if not images:
        names = ", ".join(i.name for _, i in found if i.name) or "none"
        what = f"no image named {wanted!r}" if wanted else "no image"
        raise InvalidReferenceError(f"{path} holds {what} (names: {names})")
    copies = []
    for bundle, image in images:
        label = source if len(images) == 1 else f"{source} ({image.name or image.position + 1})"
        try:
            name = destination or _bundle_name(bundle, image)
            copies.append(
                ImageCopy(
                    label,
                    destination=_destination(name, namespace),
                    bundle=bundle,
                    bundle_image=image,
                    copy_all=image.complete,
                )
            )
        except InvalidReferenceError as e:
            copies.append(ImageCopy(label, error=str(e)))
    return copies


def _bundle_name(bundle: Bundle, image: BundleImage) -> Reference:
    """The name an image of a bundle lands under: its path without the registry host."""
    if image.reference:
        reference = parse_reference(image.reference)
        return Reference("", reference.path, reference.tag, reference.digest)
    file_name = bundle.file_name
    if not image.tag:
        raise InvalidReferenceError(
            f"image {image.position + 1} of {file_name} carries no name; push it alone with tag="
        )
    # An OCI ref name is a tag; the file (or directory) names the repository.
    stem = file_name.split(".")[0].lower()
    if not _PATH.match(stem) or not _TAG.match(image.tag):
        raise InvalidReferenceError(f"cannot derive a repository from {file_name!r}; give tag=")
    return Reference("", stem, image.tag)


def check_temp_dir(temp_dir: str) -> None:
    """Refuse a temp-dir that is not an existing absolute folder."""
    if temp_dir and not (Path(temp_dir).is_absolute() and Path(temp_dir).is_dir()):
        raise InvalidPushError(f"temp-dir: {temp_dir!r} is not an absolute path to a folder")


def listing_results(copies: list[ImageCopy], netloc: str | None) -> tuple[dict, str | None]:
    """What bundles hold and where push would put each image (bundle-images)."""
    per_image: dict[str, dict] = {}
    needs: dict[Path, dict[str, int]] = {}
    failed = []
    for number, copy in enumerate(copies, start=1):
        image = copy.bundle_image
        if copy.bundle is None or image is None:
            reason = copy.error or "not a file on the unit"
            failed.append(f"{copy.source}: {reason}")
            per_image[str(number)] = {"source": copy.source, "error": reason}
            continue
        needs.setdefault(copy.bundle.path, {})[copy.bundle.member] = copy.bundle.temp_disk
        entry = {"source": copy.source, "name": image.name, "digest": image.digest}
        if image.multi_arch:
            entry["platforms"] = "all" if image.complete else "some missing: only this unit's"
        if copy.error:
            entry["error"] = copy.error
            failed.append(f"{copy.source}: {copy.error}")
        else:
            entry["destination"] = f"{netloc}/{copy.destination}" if netloc else copy.destination
        per_image[str(number)] = entry
    results = {
        "count": len(copies),
        "images": per_image,
        "temp-disk": "\n".join(_temp_disk_text(path, sizes) for path, sizes in needs.items()),
    }
    if not failed:
        return results, None
    return results, f"{len(failed)} of {len(copies)} images cannot be pushed: {'; '.join(failed)}"


def progress_text(doing: str, done: int, total: int, failed: int) -> str:
    """How far a push is, for the unit's status: `Pushing images 12/40, 1 failed`."""
    return f"{doing} images {done}/{total}" + (f", {failed} failed" if failed else "")


def status_after_a_minute(show: Callable[[str], None]) -> Callable[[int, int, int], None]:
    """A push's progress for the unit's status: shown once it has run `STATUS_AFTER` seconds.

    Then at most every `STATUS_EVERY` seconds: each is a `status-set` call.
    """
    started = time.monotonic()
    shown = [started]

    def progress(done: int, total: int, failed: int) -> None:
        now = time.monotonic()
        if now - started >= STATUS_AFTER and now - shown[0] >= STATUS_EVERY:
            shown[0] = now
            show(progress_text("Pushing", done, total, failed))

    return progress


def _temp_disk_text(path: Path, sizes: dict[str, int]) -> str:
    """The temporary disk pushing a bundle, or the bundles inside one tarball, takes."""
    if len(sizes) == 1:
        (size,) = sizes.values()
        return f"{path}: {size_text(size)} ({size} bytes)"
    largest = max(sizes.values())
    return (
        f"{path}: {len(sizes)} bundles inside, the largest {size_text(largest)} ({largest} bytes);"
        " each is written out when pushed and removed after, one per parallel copy"
    )


def push_images(
    copies: list[ImageCopy],
    access: LocalAccess,
    source_auth: SourceAuth,
    *,
    netloc: str,
    parallel: int,
    log: Callable[[str], None],
    temp_dir: str = "",
    progress: Callable[[int, int, int], None] | None = None,
) -> list[PushOutcome]:
    """Copy every image, `parallel` at a time; log each as it finishes.

    Bundles are unpacked when their first image is copied, under `temp_dir`
    (default: the bundle's own folder), and removed after their last.
    `progress` hears (done, total, failed) after each image. Returns
    outcomes in the order of `copies`, destinations under `netloc` (where
    clients pull from).
    """
    outcomes: dict[int, PushOutcome] = {}
    total = len(copies)
    lock = threading.Lock()

    def locked_log(message: str) -> None:
        with lock:
            log(message)

    def report(index: int, outcome: PushOutcome) -> None:
        if not outcome.error:
            outcome = dataclasses.replace(outcome, destination=f"{netloc}/{outcome.destination}")
        outcomes[index] = outcome
        locked_log(f"[{len(outcomes)}/{total}] {outcome.line()}")
        if progress:
            progress(len(outcomes), total, sum(1 for o in outcomes.values() if o.error))

    registries = {copy.source_registry for copy in copies if copy.source_registry}
    with (
        _skopeo_config(access, source_auth, registries) as config,
        contextlib.closing(_BundleSources(copies, temp_dir, locked_log)) as sources,
    ):

        def push(copy: ImageCopy) -> PushOutcome:
            present = config.present(copy)
            if present is not None:
                sources.release(copy)
                return present
            resolved = sources.resolve(copy)
            try:
                if resolved.error:
                    return PushOutcome(copy.source, error=resolved.error)
                return config.copy(resolved)
            finally:
                sources.release(copy)

        pending = []
        for index, copy in enumerate(copies):
            if copy.error:
                report(index, PushOutcome(copy.source, error=copy.error))
            else:
                pending.append((index, copy))
        if pending:
            (first, first_copy), rest = pending[0], pending[1:]
            report(first, push(first_copy))
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                futures = {pool.submit(push, copy): i for i, copy in rest}
                for future in as_completed(futures):
                    report(futures[future], future.result())
    return [outcomes[i] for i in range(total)]


class _BundleSources:
    """Unpacks each bundle when its first image is copied, removes it after its last.

    Bundles inside one package tarball are written out from one pass over it
    (`PackageStream`), so about `parallel` of them are on disk at a time.
    Thread-safe: the copies call it from the pool.
    """

    def __init__(self, copies: list[ImageCopy], temp_dir: str, log: Callable[[str], None]):
        self.temp_dir = temp_dir
        self.log = log
        self.lock = threading.Lock()
        wanted = {_key(c.bundle): c.bundle for c in copies if c.bundle and not c.error}
        self.remaining = collections.Counter(
            _key(c.bundle) for c in copies if c.bundle and not c.error
        )
        self.inside: dict[Path, list[Bundle]] = {}
        for bundle in wanted.values():
            if bundle.member:
                self.inside.setdefault(bundle.path, []).append(bundle)
        self.streams: dict[Path, PackageStream] = {}
        self.sources: dict[tuple[Path, str], Callable[[BundleImage], str] | str] = {}
        self.stacks: dict[tuple[Path, str], contextlib.ExitStack] = {}

    def close(self) -> None:
        """Remove whatever is still unpacked."""
        for stack in self.stacks.values():
            stack.close()
        for stream in self.streams.values():
            stream.close()

    def _work_dir(self, bundle: Bundle) -> Path:
        # Next to the bundle: the disk the operator found room on. Reading
        # in place needs only a few small files, which go to /tmp.
        beside = bundle.path.parent if bundle.temp_disk else Path(tempfile.gettempdir())
        return Path(self.temp_dir) if self.temp_dir else beside

    def resolve(self, copy: ImageCopy) -> ImageCopy:
        """The copy with skopeo's source reference, or with the error unpacking gave."""
        bundle, image = copy.bundle, copy.bundle_image
        if bundle is None or image is None:
            return copy
        key = _key(bundle)
        with self.lock:
            if key not in self.sources:
                self.sources[key] = self._unpack(bundle, key)
            source = self.sources[key]
        if isinstance(source, str):
            return dataclasses.replace(copy, error=source)
        return dataclasses.replace(copy, transport_ref=source(image))

    def _unpack(self, bundle: Bundle, key: tuple[Path, str]) -> Callable[[BundleImage], str] | str:
        stack = self.stacks[key] = contextlib.ExitStack()
        try:
            local = self._stream(bundle).extract(bundle) if bundle.member else bundle
            return stack.enter_context(unpacked(local, self._work_dir(local), self.log))
        except BundleError as e:
            return str(e)

    def _stream(self, bundle: Bundle) -> PackageStream:
        """The one pass over the package tarball holding `bundle` (opened when first read)."""
        if bundle.path not in self.streams:
            self.streams[bundle.path] = PackageStream(
                bundle.path, self.inside[bundle.path], self._work_dir(bundle), self.log
            )
        return self.streams[bundle.path]

    def release(self, copy: ImageCopy) -> None:
        """One image of the copy's bundle is done; the last one removes what was unpacked."""
        if copy.bundle is None:
            return
        key = _key(copy.bundle)
        with self.lock:
            self.remaining[key] -= 1
            if self.remaining[key] > 0:
                return
            stack = self.stacks.pop(key, None)
            if stack is not None:
                stack.close()
            if copy.bundle.member:
                # Also when nothing was unpacked (its images were there): the
                # stream then skips its members rather than writing them out.
                self._stream(copy.bundle).release(copy.bundle)


def _key(bundle: Bundle) -> tuple[Path, str]:
    return bundle.path, bundle.member


class _SkopeoConfig:
    """A private directory with skopeo's policy, auth files and our CA."""

    def __init__(
        self, tmp: Path, access: LocalAccess, source_auth: SourceAuth, source_registries: set[str]
    ):
        self.tmp = tmp
        self.access = access
        self.source_auth = source_auth
        self.secrets = [
            secret
            for secret in (
                source_auth.password,
                access.credentials.password if access.credentials else "",
            )
            if secret
        ]
        (tmp / "policy.json").write_text(json.dumps(_POLICY))
        self.dest_args = [f"--dest-tls-verify={'true' if access.tls else 'false'}"]
        if access.credentials:
            own = {access.netloc: access.credentials}
            self.dest_args += ["--dest-authfile", self._authfile("dest", own)]
        self.src_args = [f"--src-tls-verify={'true' if source_auth.tls_verify else 'false'}"]
        if source_auth.username or source_auth.password:
            login = BasicAuth(source_auth.username, source_auth.password)
            logins = dict.fromkeys(sorted(source_registries), login)
            self.src_args += ["--src-authfile", self._authfile("src", logins)]
        if access.ca_pem:
            cert_dir = tmp / "certs"
            cert_dir.mkdir()
            (cert_dir / "ca.crt").write_text(access.ca_pem)
            if access.client:  # mutual TLS: skopeo presents *.cert with its *.key
                shutil.copy(access.client.cert_path, cert_dir / "client.cert")
                shutil.copy(access.client.key_path, cert_dir / "client.key")
            self.dest_args += ["--dest-cert-dir", str(cert_dir)]
        self.env = _direct_environment(access)
        self.launcher = _resolving_to(access, tmp / "hosts") if access.name_on_loopback else []

    def _authfile(self, name: str, logins: dict[str, BasicAuth]) -> str:
        """An auth file (mode 0600) in the format skopeo reads, one entry per registry."""
        auths = {
            registry: {
                "auth": base64.b64encode(f"{login.user}:{login.password}".encode()).decode()
            }
            for registry, login in logins.items()
        }
        path = self.tmp / f"{name}-auth.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps({"auths": auths}))
        return str(path)

    def present(self, image: ImageCopy) -> PushOutcome | None:
        """The outcome of a bundle's image that the registry holds already, with its digest.

        Nothing is unpacked or copied for it: a bundle pushed twice is read twice, no more.
        """
        digest = image.bundle_image.digest if image.bundle_image and image.copy_all else ""
        if not digest:
            return None
        repository, _, tag = image.destination.partition("@")[0].partition(":")
        try:
            there = RegistryClient(self.access).manifest_digest(repository, tag or digest)
        except RegistryAPIError:
            return None
        if there != digest:
            return None
        return PushOutcome(image.source, image.destination, digest, already_there=True)

    def copy(self, image: ImageCopy) -> PushOutcome:
        """Run one `skopeo copy`; never raises, the outcome carries the error."""
        destination = f"{self.access.netloc}/{image.destination}"
        fd, digest_path = tempfile.mkstemp(dir=self.tmp, suffix=".digest")
        os.close(fd)
        digest_file = Path(digest_path)
        argv = [
            *self.launcher,
            "skopeo",
            "--policy",
            str(self.tmp / "policy.json"),
            "copy",
            *(["--all"] if image.copy_all else []),
            "--preserve-digests",
            "--retry-times",
            "0",
            "--digestfile",
            str(digest_file),
            *self.dest_args,
            *(self.src_args if image.source_registry else []),
            image.transport_ref,
            f"docker://{destination}",
        ]
        started = time.monotonic()
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=COPY_TIMEOUT,
                check=False,
                env=self.env,
            )
        except subprocess.TimeoutExpired:
            return PushOutcome(image.source, error=f"timed out after {COPY_TIMEOUT:.0f}s")
        except OSError as e:
            return PushOutcome(image.source, error=f"cannot run skopeo: {e}")
        seconds = time.monotonic() - started
        if done.returncode != 0:
            return PushOutcome(image.source, error=self._reason(done.stderr), seconds=seconds)
        digest = digest_file.read_text().strip()
        # A destination is repository[:tag][@digest]; a repository holds no colon.
        repository = image.destination.partition("@")[0].partition(":")[0]
        size = image_size(RegistryClient(self.access), repository, digest)
        return PushOutcome(image.source, image.destination, digest, size=size, seconds=seconds)

    def _reason(self, stderr: str) -> str:
        """The message skopeo gave, without its log prefix and without any secret."""
        lines = stderr.strip().splitlines() or ["skopeo failed without a message"]
        match = _SKOPEO_MESSAGE.search(lines[-1])
        reason = match.group(1).replace('\\"', '"') if match else lines[-1]
        for secret in self.secrets:
            reason = reason.replace(secret, "***")
        return reason


def image_size(client: RegistryClient, repository: str, digest: str) -> int:
    """An image's bytes as the registry holds it, every platform's; 0 if it cannot tell."""
    try:
        _, _, body = client.request(
            "GET", f"/v2/{repository}/manifests/{digest}", {"Accept": ", ".join(MANIFEST_TYPES)}
        )
        manifest = json.loads(body)
        if "manifests" in manifest:
            return len(body) + sum(
                image_size(client, repository, child["digest"]) for child in manifest["manifests"]
            )
        blobs = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
        return len(body) + sum(int(blob.get("size", 0)) for blob in blobs)
    except (RegistryAPIError, ValueError, TypeError, KeyError, AttributeError):
        return 0


def _direct_environment(access: LocalAccess) -> dict[str, str]:
    """Skopeo's environment: proxies (from the hook) stay for sources, never for our registry.

    Go reads NO_PROXY before no_proxy; both get our name and address.
    """
    env = dict(os.environ)
    existing = env.get("NO_PROXY") or env.get("no_proxy") or ""
    no_proxy = ",".join(part for part in (existing, access.host, access.address) if part)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def _resolving_to(access: LocalAccess, hosts: Path) -> list[str]:
    """A launcher in which our registry's name resolves to its loopback address.

    The unit may not resolve the name its certificate carries (split DNS),
    or resolve it to an ingress. A private mount namespace (the charm runs
    as root) gets a copy of /etc/hosts with the name on loopback; nothing
    changes for the rest of the machine.
    """
    name = access.host
    try:
        current = Path("/etc/hosts").read_text().splitlines()
    except OSError:
        current = []
    kept = [line for line in current if name not in line.split("#", 1)[0].split()[1:]]
    hosts.write_text("\n".join([f"{access.address} {name}", *kept]) + "\n")
    hosts.chmod(0o644)
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        'mount --bind "$0" /etc/hosts && exec "$@"',
        str(hosts),
    ]


@contextlib.contextmanager
def _skopeo_config(
    access: LocalAccess, source_auth: SourceAuth, source_registries: set[str]
) -> Iterator[_SkopeoConfig]:
    with tempfile.TemporaryDirectory(prefix="push-") as tmp:
        yield _SkopeoConfig(Path(tmp), access, source_auth, source_registries)


def action_results(outcomes: list[PushOutcome]) -> tuple[dict, str | None]:
    """The action's results and, when some image failed, the failure message.

    `outcome` and `raw` as the established charm gave them, then each image.
    """
    pushed = [o.destination for o in outcomes if not o.error]
    failed = [o for o in outcomes if o.error]
    per_image = {
        str(number): (
            {"source": o.source, "error": o.error}
            if o.error
            else {
                "source": o.source,
                "destination": o.destination,
                "digest": o.digest,
            }
        )
        for number, o in enumerate(outcomes, start=1)
    }
    results = {
        "outcome": "failure" if failed else "success",
        "raw": f"pushed {', '.join(pushed)}" if pushed else "pushed nothing",
        "images": per_image,
    }
    if not failed:
        return results, None
    reasons = "; ".join(f"{o.source}: {o.error}" for o in failed)
    return results, f"{len(failed)} of {len(outcomes)} images failed: {reasons}"
