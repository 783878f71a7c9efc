"""The push action: copy images into this unit's registry with skopeo.

Sources are registry references or image files on the unit (for air-gapped
sites). Every copy preserves digests (`--preserve-digests --all`), so the
pushed manifest digest equals the source's. Credentials reach skopeo only
through 0600 auth files in a private temporary directory, never on its
command line, and are scrubbed from any error text.

Speed: a batch's fixed cost per image (a skopeo process, a dozen registry
requests each doing filesystem work) dominates once the bytes are on the
wire, so copies run concurrently. The first image goes alone: layers it
shares with the rest (a common base) are then in the registry and in
skopeo's blob-info cache, and the other copies mount them instead of
uploading them again. bench/push.py measures this; see the README.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from state.settings import BasicAuth
from workload.registry_api import LocalAccess

COPY_TIMEOUT = 3600.0
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
    """What the operator wrote."""
    transport_ref: str = ""
    """The source as skopeo takes it (docker://..., oci-archive:...)."""
    destination: str = ""
    source_registry: str = ""
    """Host the source credentials are for; empty for files."""
    error: str = ""
    """Why this image cannot be copied (found before copying)."""


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


def plan_copies(
    images: str, *, tag: str = "", namespace: str = "", own_netlocs: tuple[str, ...] = ()
) -> list[ImageCopy]:
    """The copies a push asks for; a bad entry becomes an ImageCopy with an error.

    `tag` names the destination of a single image and may start with one of
    `own_netlocs` (as the established charm took it).
    """
    sources = images.split()
    if not sources:
        raise InvalidPushError("image: give at least one image reference")
    if tag and len(sources) > 1:
        raise InvalidPushError(
            "tag: names the destination of one image; use namespace for several"
        )
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
    return [_plan_copy(source, destination_override, namespace) for source in sources]


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


def _plan_copy(source: str, destination: Reference | None, namespace: str) -> ImageCopy:
    try:
        transport, _, rest = source.partition(":")
        if transport in FILE_TRANSPORTS and rest:
            transport_ref, name = _file_source(transport, rest)
            registry = ""
        else:
            reference = parse_reference(source.removeprefix("docker://"))
            registry = reference.domain or DOCKER_HUB
            transport_ref = f"docker://{registry}/{_hub_path(reference)}{reference.target}"
            name = reference
        if destination is None:
            if name is None:
                raise InvalidReferenceError("the file does not name its image; give tag=")
            destination = name
        target = destination.target or ":latest"
        path = f"{namespace}/{destination.path}" if namespace else destination.path
        return ImageCopy(source, transport_ref, f"{path}{target}", registry)
    except InvalidReferenceError as e:
        return ImageCopy(source, error=str(e))


def _hub_path(reference: Reference) -> str:
    """Docker Hub's official images live under library/."""
    if reference.domain in ("", DOCKER_HUB) and "/" not in reference.path:
        return f"library/{reference.path}"
    return reference.path


def _file_source(transport: str, rest: str) -> tuple[str, Reference | None]:
    """The skopeo reference of an image file and the image name it carries, if any."""
    path_text, _, name = rest.partition(":")
    path = Path(path_text)
    if not path.is_absolute():
        raise InvalidReferenceError(f"{transport}: give an absolute path, not {path_text!r}")
    if not path.exists():
        raise InvalidReferenceError(f"no such file on the unit: {path_text}")
    transport_ref = f"{transport}:{path_text}" + (f":{name}" if name else "")
    name = name or _embedded_name(transport, path)
    if not name:
        return transport_ref, None
    if transport == "docker-archive" or "/" in name or ":" in name:
        reference = parse_reference(name)
        return transport_ref, Reference("", reference.path, reference.tag, reference.digest)
    # An OCI ref name is a tag; the file (or directory) names the repository.
    stem = path.name.split(".")[0].lower()
    if not _PATH.match(stem) or not _TAG.match(name):
        raise InvalidReferenceError(f"cannot derive a repository from {path.name!r}; give tag=")
    return transport_ref, Reference("", stem, name)


def _embedded_name(transport: str, path: Path) -> str:
    """The one image name an archive or layout declares; empty if none or several."""
    try:
        if transport == "docker-archive":
            manifest = json.loads(_read_member(path, "manifest.json"))
            tags = [tag for entry in manifest for tag in entry.get("RepoTags") or []]
            return tags[0] if len(manifest) == 1 and tags else ""
        if transport == "oci-archive":
            index = json.loads(_read_member(path, "index.json"))
        else:
            index = json.loads((path / "index.json").read_text())
    except (OSError, ValueError, KeyError, tarfile.TarError) as e:
        raise InvalidReferenceError(f"cannot read {path}: {e}") from None
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        return ""
    annotations = manifests[0].get("annotations") or {}
    return annotations.get("io.containerd.image.name") or annotations.get(
        "org.opencontainers.image.ref.name", ""
    )


def _read_member(archive: Path, member: str) -> bytes:
    with tarfile.open(archive) as tar:
        extracted = tar.extractfile(member)
        if extracted is None:
            raise KeyError(member)
        return extracted.read()


def push_images(
    copies: list[ImageCopy],
    access: LocalAccess,
    source_auth: SourceAuth,
    *,
    netloc: str,
    parallel: int,
    log: Callable[[str], None],
) -> list[PushOutcome]:
    """Copy every image, `parallel` at a time; report each as it finishes.

    Returns outcomes in the order of `copies`, destinations under `netloc`
    (where clients pull from).
    """
    outcomes: dict[int, PushOutcome] = {}
    total = len(copies)

    def report(index: int, outcome: PushOutcome) -> None:
        if not outcome.error:
            outcome = dataclasses.replace(outcome, destination=f"{netloc}/{outcome.destination}")
        outcomes[index] = outcome
        if outcome.error:
            log(f"[{len(outcomes)}/{total}] {outcome.source}: failed: {outcome.error}")
        else:
            log(
                f"[{len(outcomes)}/{total}] {outcome.source} -> "
                f"{outcome.destination} {outcome.digest}"
            )

    registries = {copy.source_registry for copy in copies if copy.source_registry}
    with _skopeo_config(access, source_auth, registries) as config:
        pending = []
        for index, copy in enumerate(copies):
            if copy.error:
                report(index, PushOutcome(copy.source, error=copy.error))
            else:
                pending.append(index)
        if pending:
            first, rest = pending[0], pending[1:]
            report(first, config.copy(copies[first]))
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                futures = {pool.submit(config.copy, copies[i]): i for i in rest}
                for future in as_completed(futures):
                    report(futures[future], future.result())
    return [outcomes[i] for i in range(total)]


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

    def copy(self, image: ImageCopy) -> PushOutcome:
        """Run one `skopeo copy`; never raises, the outcome carries the error."""
        destination = f"{self.access.netloc}/{image.destination}"
        fd, digest_path = tempfile.mkstemp(dir=self.tmp, suffix=".digest")
        os.close(fd)
        digest_file = Path(digest_path)
        argv = [
            "skopeo",
            "--policy",
            str(self.tmp / "policy.json"),
            "copy",
            "--all",
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
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=COPY_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            return PushOutcome(image.source, error=f"timed out after {COPY_TIMEOUT:.0f}s")
        except OSError as e:
            return PushOutcome(image.source, error=f"cannot run skopeo: {e}")
        if done.returncode != 0:
            return PushOutcome(image.source, error=self._reason(done.stderr))
        return PushOutcome(image.source, image.destination, digest_file.read_text().strip())

    def _reason(self, stderr: str) -> str:
        """The message skopeo gave, without its log prefix and without any secret."""
        lines = stderr.strip().splitlines() or ["skopeo failed without a message"]
        match = _SKOPEO_MESSAGE.search(lines[-1])
        reason = match.group(1).replace('\\"', '"') if match else lines[-1]
        for secret in self.secrets:
            reason = reason.replace(secret, "***")
        return reason


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
