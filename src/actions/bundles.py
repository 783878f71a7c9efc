"""Image bundles: archives and layouts holding several images, listed and unpacked for skopeo.

skopeo 1.9 copies one image it is given the name of; it cannot say what an
archive holds, and `oci-archive:` unpacks the whole archive again for every
image it copies. So the charm reads the bundle's own table of contents
(`index.json` of an OCI layout or archive, with `io.containerd.image.name`
or `org.opencontainers.image.ref.name` per image; `manifest.json` of a
`docker save` archive, with its `RepoTags`; a `ctr images export` archive
carries both), then unpacks it once and points skopeo at each image.

Memory stays small whatever the bundle's size: tar members are streamed,
and only the JSON files and blobs under `SMALL_BLOB` bytes (manifests, to
see whether a multi-arch index carries all its platforms) are read into
memory. A compressed bundle (gzip, xz, bzip2; zstd with the `zstandard`
library) is read twice, once to list and once to unpack, rather than kept
in memory or on disk.

Temporary disk (`Bundle.temp_disk`), in a folder next to the bundle unless
the push says otherwise, removed when the push ends:
- an OCI archive, compressed or not: its blobs, extracted once (about its
  uncompressed size); skopeo then reads each image from that one copy;
- a compressed `docker save` archive: the decompressed tar;
- an OCI layout directory or an uncompressed `docker save` archive: nothing.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import lzma
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import zstandard

CONTAINERD_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
SMALL_BLOB = 64 * 1024
"""Blobs up to this size (manifests, configs) are kept in memory while listing."""
_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"BZh": "bzip2",
    b"\x28\xb5\x2f\xfd": "zstd",
}
_OPENERS = {"gzip": gzip.open, "xz": lzma.open, "bzip2": bz2.open}
_BLOB = re.compile(r"^blobs/([a-z0-9]+)/([a-f0-9]{32,})$")
_KEEP = ("index.json", "oci-layout", "manifest.json")
_COPY_CHUNK = 1024 * 1024
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    tarfile.TarError,
    lzma.LZMAError,
    zlib.error,
    zstandard.ZstdError,
)


class BundleError(ValueError):
    """The bundle cannot be read or unpacked; the message names the file and why."""


@dataclass(frozen=True)
class BundleImage:
    """One image a bundle holds, as the bundle names it."""

    reference: str
    """A full name (`gcr.io/team/app:v1`): containerd's, a docker tag, a full ref name."""
    tag: str
    """An OCI ref name that is only a tag (`v1`); without `reference`, the file names the
    repository."""
    position: int
    """Its place in index.json (OCI) or manifest.json (docker save)."""
    digest: str = ""
    """The manifest (or index) digest; empty for docker save, where skopeo makes one."""
    multi_arch: bool = False
    complete: bool = True
    """Whether every platform of a multi-arch index is in the bundle."""

    @property
    def name(self) -> str:
        """How the operator sees it in listings."""
        return self.reference or self.tag


@dataclass(frozen=True)
class Bundle:
    """A bundle's table of contents and how to unpack it."""

    path: Path
    format: Literal["oci", "docker"]
    compression: str
    """"" for a plain tar or a directory; else gzip, xz, bzip2 or zstd."""
    images: tuple[BundleImage, ...]
    temp_disk: int
    """Bytes written to the temporary folder while it is pushed."""


def read_bundle(path: Path, transport: str = "") -> Bundle:
    """List what a bundle file or OCI layout directory holds, without unpacking it.

    A `ctr images export` archive is read as OCI (its digests are the
    registry's) unless `transport` is `docker-archive`.
    """
    try:
        if path.is_dir():
            return _read_layout(path)
        return _read_archive(path, transport)
    except BundleError:
        raise
    except _READ_ERRORS as e:
        raise BundleError(f"cannot read {path}: {e}") from None


def _read_layout(path: Path) -> Bundle:
    index = _json(path / "index.json", path)
    blobs = {
        f"{folder.name}:{blob.name}"
        for folder in (path / "blobs").glob("*")
        for blob in folder.iterdir()
    }

    def read_blob(digest: str) -> bytes | None:
        algorithm, _, hexdigest = digest.partition(":")
        blob = path / "blobs" / algorithm / hexdigest
        return blob.read_bytes() if blob.is_file() and blob.stat().st_size <= SMALL_BLOB else None

    images = _oci_images(index, blobs, read_blob)
    return Bundle(path, "oci", "", images, temp_disk=0)


def _json(source: Path | bytes, path: Path):
    try:
        return json.loads(source.read_bytes() if isinstance(source, Path) else source)
    except FileNotFoundError:
        raise BundleError(f"{path} is not an OCI layout (no index.json)") from None
    except ValueError as e:
        raise BundleError(f"{path}: bad JSON: {e}") from None


def _read_archive(path: Path, transport: str) -> Bundle:
    compression = compression_of(path)
    members: dict[str, int] = {}
    contents: dict[str, bytes] = {}
    with _members(path, compression) as tar:
        for member in tar:
            name = _member_name(member)
            if not member.isfile():
                continue
            members[name] = member.size
            if name in _KEEP or (member.size <= SMALL_BLOB and _BLOB.match(name)):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    contents[name] = extracted.read()
    has_index, has_manifest = "index.json" in contents, "manifest.json" in contents
    if has_index and not (transport == "docker-archive" and has_manifest):
        blobs = {_digest_of(name) for name in members if _BLOB.match(name)}

        def read_blob(digest: str) -> bytes | None:
            return contents.get("blobs/" + digest.replace(":", "/", 1))

        images = _oci_images(_json(contents["index.json"], path), blobs, read_blob)
        kept = sum(size for name, size in members.items() if _BLOB.match(name) or name in _KEEP)
        return Bundle(path, "oci", compression, images, temp_disk=kept)
    if has_manifest:
        images = _docker_images(_json(contents["manifest.json"], path), path)
        tar_size = sum(512 + -(-size // 512) * 512 for size in members.values()) + 1024
        return Bundle(path, "docker", compression, images, tar_size if compression else 0)
    raise BundleError(
        f"{path} is neither an OCI archive (index.json) nor a docker save archive (manifest.json)"
    )


def _oci_images(
    index: dict, blobs: set[str], read_blob: Callable[[str], bytes | None]
) -> tuple[BundleImage, ...]:
    images = []
    for position, descriptor in enumerate(index.get("manifests") or []):
        annotations = descriptor.get("annotations") or {}
        containerd_name = annotations.get(CONTAINERD_NAME, "")
        ref_name = annotations.get(REF_NAME, "")
        full = containerd_name or (ref_name if "/" in ref_name or ":" in ref_name else "")
        digest = str(descriptor.get("digest", ""))
        multi_arch = descriptor.get("mediaType") in INDEX_TYPES
        complete = digest in blobs
        if multi_arch and complete:
            raw = read_blob(digest)
            children = json.loads(raw).get("manifests") or [] if raw else []
            complete = all(child.get("digest") in blobs for child in children)
        images.append(
            BundleImage(
                reference=full,
                tag="" if ref_name == full else ref_name,
                position=position,
                digest=digest,
                multi_arch=multi_arch,
                complete=complete,
            )
        )
    return tuple(images)


def _docker_images(manifest: list, path: Path) -> tuple[BundleImage, ...]:
    if not isinstance(manifest, list):
        raise BundleError(f"{path}: manifest.json is not a docker save manifest")
    return tuple(
        BundleImage(reference=tag, tag="", position=position)
        for position, entry in enumerate(manifest)
        for tag in (entry.get("RepoTags") or [""])
    )


def compression_of(path: Path) -> str:
    """The compression a file's first bytes announce; "" for none."""
    with path.open("rb") as f:
        head = f.read(6)
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), "")


@contextlib.contextmanager
def _decompressed(path: Path, compression: str) -> Iterator[IO[bytes]]:
    """The archive's tar stream, decompressed on the fly."""
    with path.open("rb") as raw:
        if compression == "zstd":
            with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
                yield stream
        elif compression:
            with _OPENERS[compression](raw, "rb") as stream:
                yield stream
        else:
            yield raw


@contextlib.contextmanager
def _members(path: Path, compression: str) -> Iterator[tarfile.TarFile]:
    """The tar, seekable when plain (members are skipped, not read), streamed otherwise."""
    if not compression:
        with tarfile.open(path, "r:") as tar:
            yield tar
        return
    with (
        _decompressed(path, compression) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        yield tar


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    return name


def _digest_of(member: str) -> str:
    algorithm, _, hexdigest = member.removeprefix("blobs/").partition("/")
    return f"{algorithm}:{hexdigest}"


@contextlib.contextmanager
def unpacked(
    bundle: Bundle, work_dir: Path, log: Callable[[str], None]
) -> Iterator[Callable[[BundleImage], str]]:
    """The source reference skopeo reads each image of the bundle from, inside the block.

    Unpacks into a temporary folder under `work_dir` (checking the free
    space first) and removes it at the end, whatever happened.
    """
    try:
        tmp_dir = tempfile.TemporaryDirectory(prefix=".push-", dir=work_dir)
    except OSError as e:
        raise BundleError(f"cannot unpack {bundle.path} in {work_dir}: {e}") from None
    with tmp_dir as tmp_name:
        try:
            source = _unpack(bundle, work_dir, Path(tmp_name), log)
        except BundleError:
            raise
        except _READ_ERRORS as e:
            raise BundleError(f"cannot unpack {bundle.path}: {e}") from None
        yield source


def _unpack(
    bundle: Bundle, work_dir: Path, tmp: Path, log: Callable[[str], None]
) -> Callable[[BundleImage], str]:
    if bundle.temp_disk:
        _check_space(bundle, work_dir)
        log(f"unpacking {bundle.path} ({size_text(bundle.temp_disk)}) into {tmp}")
    if bundle.format == "docker":
        archive = bundle.path
        if bundle.compression:
            archive = tmp / "bundle.tar"
            with (
                _decompressed(bundle.path, bundle.compression) as stream,
                archive.open("wb") as out,
            ):
                shutil.copyfileobj(stream, out, _COPY_CHUNK)
        return lambda image: f"docker-archive:{archive}:@{image.position}"
    layout = bundle.path
    if not bundle.path.is_dir():
        layout = tmp / "layout"
        _extract_oci(bundle, layout)
    index = json.loads((layout / "index.json").read_bytes())
    return lambda image: _image_layout(layout, index, image, tmp)


def _check_space(bundle: Bundle, work_dir: Path) -> None:
    free = shutil.disk_usage(work_dir).free
    if free < bundle.temp_disk:
        raise BundleError(
            f"unpacking {bundle.path} needs {size_text(bundle.temp_disk)} in {work_dir}, "
            f"which has {size_text(free)} free; give temp-dir= on a larger disk"
        )


def size_text(size: int) -> str:
    """A size for people: 3.2 GiB."""
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GiB":
            return f"{scaled:.1f} {unit}"
    raise AssertionError("unreachable")


def _extract_oci(bundle: Bundle, layout: Path) -> None:
    """Write the layout's own files (index, blobs) from the archive; nothing else, no links."""
    with _members(bundle.path, bundle.compression) as tar:
        for member in tar:
            name = _member_name(member)
            if not member.isfile() or not (name in _KEEP or _BLOB.match(name)):
                continue
            target = layout / name
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = tar.extractfile(member)
            if extracted is None:
                continue
            with target.open("wb") as out:
                shutil.copyfileobj(extracted, out, _COPY_CHUNK)


def _image_layout(layout: Path, index: dict, image: BundleImage, tmp: Path) -> str:
    """A layout holding just this image, sharing the bundle's blobs (a symlink).

    Ref names may repeat in a bundle (`ctr export` writes only the tag) or be
    missing; a layout of one image names it unambiguously.
    """
    folder = tmp / f"image-{image.position}"
    if not folder.exists():
        folder.mkdir()
        (folder / "blobs").symlink_to((layout / "blobs").resolve())
        (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        descriptor = dict(index["manifests"][image.position])
        descriptor["annotations"] = {REF_NAME: "image"}
        (folder / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "manifests": [descriptor]})
        )
    return f"oci:{folder}:image"
