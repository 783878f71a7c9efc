"""Image bundles: archives and layouts holding several images, listed and unpacked for skopeo.

A package operators carry in may hold many bundles (`read_package`), found
by looking at the contents, never the names: a tarball or folder holding,
at any depth, image archives (OCI, `docker save`, `ctr export`, compressed
or not), OCI layouts and `skopeo sync --dest dir` folders (one `dir:`
folder per `<repository>:<tag>`, `--scoped` or not).

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

A bundle inside a package tarball (`Bundle.member`) is written out alone,
from one pass over the package's stream, when its first image is pushed,
and removed when its last one is: an image archive's layout or decompressed
tar, a folder's own files. The temporary disk of a package is so about
`parallel` of its bundles at a time, not the package.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
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
_DIR_VERSION = b"Directory Transport Version"
_DIR_FILE = re.compile(
    r"^(?:[a-f0-9]{64}(?:\.manifest\.json)?|manifest\.json|version|signature-[0-9]+)$"
)
"""The files of a skopeo `dir:` folder: blobs by digest, manifests, signatures."""
_BLOB_NAMED = re.compile(r"(?:^|/)(?:blobs/[a-z0-9]+/[a-f0-9]{32,}|[a-f0-9]{64})$")
"""Members named as blobs (layers are gzip tars too): never looked into."""
_ARCHIVE_MEMBER = re.compile(
    r"^(?:\.|blobs(?:/.*)?|index\.json|oci-layout|manifest\.json|repositories"
    r"|[a-f0-9]{64}(?:\.json|/.*)?)$"
)
"""What an image archive (OCI, docker save, ctr export) holds, at its root."""
_TAR_HEADER = 512
_LOCAL_NAME = {"oci": "layout", "docker": "bundle.tar", "dir": "dir"}
"""What a bundle inside a package is written out as, in its own folder."""
_COPY_CHUNK = 1024 * 1024
FOLDER_FILES_LIMIT = 10_000
"""Files a folder package may make the walk look into; past it the operator names a
narrower folder (a package holds archives and folders, not a file system)."""
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
    format: Literal["oci", "docker", "dir"]
    """An OCI layout or archive, a `docker save` archive, a skopeo `dir:` folder."""
    compression: str
    """"" for a plain tar or a directory; else gzip, xz, bzip2 or zstd."""
    images: tuple[BundleImage, ...]
    temp_disk: int
    """Bytes written to the temporary folder while it is pushed."""
    member: str = ""
    """Where it lies inside the package tarball `path`: a nested archive or a folder."""
    member_kind: Literal["", "archive", "folder"] = ""
    last_member: int = -1
    """The position of its last member in the tarball's stream."""

    @property
    def file_name(self) -> str:
        """The name of its own file or folder, which names images that carry only a tag."""
        return PurePosixPath(self.member).name if self.member else self.path.name

    @property
    def label(self) -> str:
        """How listings name it: the path, and where inside."""
        return f"{self.path}:{self.member}" if self.member else str(self.path)


def read_bundle(path: Path, transport: str = "") -> Bundle:
    """List what a bundle file or OCI layout directory holds, without unpacking it.

    A `ctr images export` archive is read as OCI (its digests are the
    registry's) unless `transport` is `docker-archive`.
    """
    try:
        if _checked_source(path):
            return _read_layout(path)
        return _read_archive(path, transport)
    except BundleError:
        raise
    except _READ_ERRORS as e:
        raise BundleError(f"cannot read {path}: {e}") from None


def read_package(path: Path) -> tuple[Bundle, ...]:
    """Every bundle a file or folder holds, in the order they come, found by their contents."""
    try:
        bundles = _read_folder(path) if _checked_source(path) else _read_tarball(path)
    except BundleError:
        raise
    except _READ_ERRORS as e:
        raise BundleError(f"cannot read {path}: {e}") from None
    if not bundles:
        raise BundleError(
            f"{path} holds no image archive, OCI layout or skopeo dir folder"
            " (neither an OCI archive (index.json) nor a docker save archive (manifest.json))"
        )
    return bundles


def _checked_source(path: Path) -> bool:
    """Whether `path` is a folder; refuse what is neither a folder nor a non-empty file.

    A pipe, a device or a kernel file (`/proc/kmsg`, size 0) would block the
    action forever or read without end; no image archive is empty.
    """
    status = path.stat()
    if stat.S_ISDIR(status.st_mode):
        return True
    if not stat.S_ISREG(status.st_mode):
        raise BundleError(f"{path} is neither a regular file nor a folder")
    if status.st_size == 0:
        raise BundleError(f"{path} is empty")
    return False


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
    with _members(path, compression) as tar:
        scan = _TarScan(tar)
    bundle = scan.archive(path, compression, transport)
    if bundle is None:
        raise BundleError(
            f"{path} is neither an OCI archive (index.json) nor a docker save archive"
            " (manifest.json)"
        )
    return bundle


def _read_tarball(path: Path) -> tuple[Bundle, ...]:
    compression = compression_of(path)
    with _members(path, compression) as tar:
        scan = _TarScan(tar, nested=True)
    whole = scan.archive(path, compression, "")
    return (*([whole] if whole else []), *scan.inside(path))


def _read_folder(root: Path) -> tuple[Bundle, ...]:
    """The bundles of a folder: itself if it is a layout or a `dir:` folder, else what it holds."""
    if (root / "index.json").is_file():
        return (_read_layout(root),)
    if _is_dir_image(root):
        return (_read_dir_image(root, root.name),)
    found: list[Bundle] = []
    device = root.stat().st_dev
    files_seen = 0
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        # One file system: a package never spans mounts, and /proc or /sys would block or
        # never end.
        subfolders[:] = sorted(name for name in subfolders if _on_device(here / name, device))
        if here != root and (here / "oci-layout").is_file() and (here / "index.json").is_file():
            found.append(_read_layout(here))
            subfolders.clear()
        elif here != root and _is_dir_image(here):
            found.append(_read_dir_image(here, _dir_image_name(here.relative_to(root).as_posix())))
            subfolders.clear()
        else:
            files_seen += len(files)
            if files_seen > FOLDER_FILES_LIMIT:
                raise BundleError(
                    f"{root} holds more than {FOLDER_FILES_LIMIT} files outside image folders;"
                    " give the folder the images are in"
                )
            found.extend(
                bundle
                for name in sorted(files)
                if (bundle := _read_archive_file(here / name)) is not None
            )
    return tuple(found)


def _read_archive_file(path: Path) -> Bundle | None:
    """The bundle a file in a folder package is, None if it is no image archive."""
    if _BLOB_NAMED.search(path.name):
        return None
    try:
        status = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(status.st_mode) or status.st_size == 0:
        return None
    with path.open("rb") as raw, _opened_tar(raw) as (stream, _):
        if stream is None:
            return None
    compression = compression_of(path)
    with _members(path, compression) as tar:
        scan = _TarScan(tar, inner=True)
    return None if scan.foreign else scan.archive(path, compression, "")


def _on_device(folder: Path, device: int) -> bool:
    try:
        return folder.lstat().st_dev == device
    except OSError:
        return False


def _is_dir_image(folder: Path) -> bool:
    version = folder / "version"
    if not (version.is_file() and (folder / "manifest.json").is_file()):
        return False
    with version.open("rb") as f:
        return f.read(len(_DIR_VERSION)) == _DIR_VERSION


def _read_dir_image(folder: Path, name: str) -> Bundle:
    present = {p.name for p in folder.iterdir()}
    image = _dir_image(name, (folder / "manifest.json").read_bytes(), present, folder)
    return Bundle(folder, "dir", "", (image,), temp_disk=0)


def _dir_image(name: str, manifest: bytes, present: set[str], where: Path) -> BundleImage:
    """The image a `dir:` folder holds: its manifest (or index, with `--all`) and name."""
    parsed = _json(manifest, where)
    children = parsed.get("manifests") if isinstance(parsed, dict) else None
    multi_arch = isinstance(children, list)
    complete = not multi_arch or all(
        f"{str(child.get('digest', '')).partition(':')[2]}.manifest.json" in present
        for child in children or []
    )
    return BundleImage(
        reference=name,
        tag="",
        position=0,
        digest="sha256:" + hashlib.sha256(manifest).hexdigest(),
        multi_arch=multi_arch,
        complete=complete,
    )


def _dir_image_name(relative: str) -> str:
    """`skopeo sync` names folders `<repository>:<tag>`, after the host with `--scoped`.

    Whatever folders lead to the host (where the sync output was put) go.
    """
    parts = relative.split("/")
    hosts = [i for i, part in enumerate(parts[:-1]) if "." in part or ":" in part]
    return "/".join(parts[hosts[-1] :]) if hosts else relative


class _TarScan:
    """One pass over a tar: member sizes and positions, the small files, nested archives."""

    def __init__(self, tar: tarfile.TarFile, *, nested: bool = False, inner: bool = False):
        """`nested`: look into members for image archives; `inner`: this is such a member.

        An inner tar stops at its first member no image archive has (a
        layer's `etc/`, a backup's files): it is not one, and is not read on.
        """
        self.sizes: dict[str, int] = {}
        self.positions: dict[str, int] = {}
        self.contents: dict[str, bytes] = {}
        self.archives: list[Bundle] = []
        self.foreign = False
        for position, member in enumerate(tar):
            name = _member_name(member)
            if inner and not _ARCHIVE_MEMBER.match(name):
                self.foreign = True
                break
            if not member.isfile():
                continue
            self.sizes[name] = member.size
            self.positions[name] = position
            base = name.rpartition("/")[2]
            blob_named = bool(_BLOB_NAMED.search(name))
            if base in (*_KEEP, "version") or (blob_named and member.size <= SMALL_BLOB):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    self.contents[name] = extracted.read()
            elif nested and not blob_named:
                self._look_into(tar, member, name, position)

    def _look_into(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, at: int):
        with _member_tar(tar, member) as (stream, compression):
            if stream is None:
                return
            with tarfile.open(fileobj=stream, mode="r|") as inner:
                scan = _TarScan(inner, inner=True)
        bundle = None if scan.foreign else scan.archive(Path(name), compression, "")
        if bundle is not None:
            temp_disk = bundle.temp_disk or scan.tar_size()
            self.archives.append(
                dataclasses.replace(
                    bundle,
                    member=name,
                    member_kind="archive",
                    last_member=at,
                    temp_disk=temp_disk,
                )
            )

    def tar_size(self) -> int:
        """The size of the tar these members make, uncompressed."""
        return sum(_TAR_HEADER + -(-size // 512) * 512 for size in self.sizes.values()) + 1024

    def archive(self, path: Path, compression: str, transport: str) -> Bundle | None:
        """The bundle the tar itself is (files at its root), if it is one."""
        contents = self.contents
        has_index, has_manifest = "index.json" in contents, "manifest.json" in contents
        if has_index and not (transport == "docker-archive" and has_manifest):
            blobs = {_digest_of(name) for name in self.sizes if _BLOB.match(name)}

            def read_blob(digest: str) -> bytes | None:
                return contents.get("blobs/" + digest.replace(":", "/", 1))

            images = _oci_images(_json(contents["index.json"], path), blobs, read_blob)
            kept = sum(s for name, s in self.sizes.items() if _BLOB.match(name) or name in _KEEP)
            return Bundle(path, "oci", compression, images, temp_disk=kept)
        if has_manifest and "version" not in contents:
            images = _docker_images(_json(contents["manifest.json"], path), path)
            return Bundle(
                path, "docker", compression, images, self.tar_size() if compression else 0
            )
        return None

    def inside(self, path: Path) -> list[Bundle]:
        """The bundles within: nested archives, OCI layouts and `dir:` folders, in stream order."""
        tops = {name.partition("/")[0] for name in self.sizes}
        found = [dataclasses.replace(archive, path=path) for archive in self.archives]
        for name, content in self.contents.items():
            folder, _, base = name.rpartition("/")
            if not folder:
                continue
            if base == "index.json" and f"{folder}/oci-layout" in self.sizes:
                found.append(self._layout(path, folder))
            elif (
                base == "version"
                and content.startswith(_DIR_VERSION)
                and f"{folder}/manifest.json" in self.contents
            ):
                relative = folder.partition("/")[2] if len(tops) == 1 and "/" in folder else folder
                found.append(self._dir(path, folder, _dir_image_name(relative)))
        return sorted(found, key=lambda bundle: bundle.last_member)

    def _under(self, folder: str) -> dict[str, int]:
        prefix = f"{folder}/"
        return {
            name[len(prefix) :]: s for name, s in self.sizes.items() if name.startswith(prefix)
        }

    def _last(self, folder: str) -> int:
        prefix = f"{folder}/"
        return max(at for name, at in self.positions.items() if name.startswith(prefix))

    def _layout(self, path: Path, folder: str) -> Bundle:
        sizes = self._under(folder)
        blobs = {_digest_of(name) for name in sizes if _BLOB.match(name)}

        def read_blob(digest: str) -> bytes | None:
            return self.contents.get(f"{folder}/blobs/" + digest.replace(":", "/", 1))

        index = _json(self.contents[f"{folder}/index.json"], path)
        return Bundle(
            path,
            "oci",
            "",
            _oci_images(index, blobs, read_blob),
            temp_disk=sum(s for name, s in sizes.items() if _BLOB.match(name) or name in _KEEP),
            member=folder,
            member_kind="folder",
            last_member=self._last(folder),
        )

    def _dir(self, path: Path, folder: str, name: str) -> Bundle:
        sizes = {rel: s for rel, s in self._under(folder).items() if _DIR_FILE.match(rel)}
        manifest = self.contents[f"{folder}/manifest.json"]
        return Bundle(
            path,
            "dir",
            "",
            (_dir_image(name, manifest, set(sizes), path),),
            temp_disk=sum(sizes.values()),
            member=folder,
            member_kind="folder",
            last_member=self._last(folder),
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
    with path.open("rb") as raw, _decompressing(raw, compression) as stream:
        yield stream


@contextlib.contextmanager
def _decompressing(raw: IO[bytes], compression: str) -> Iterator[IO[bytes]]:
    if compression == "zstd":
        with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            yield stream
    elif compression:
        with _OPENERS[compression](raw, "rb") as stream:
            yield stream
    else:
        yield raw


class _Rewound(io.RawIOBase):
    """A stream whose first bytes, already read to look at them, are given back."""

    def __init__(self, head: bytes, rest: IO[bytes]):
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if self.head:
            size = min(len(view), len(self.head))
            view[:size] = self.head[:size]
            self.head = self.head[size:]
            return size
        data = self.rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def _member_tar(
    tar: tarfile.TarFile, member: tarfile.TarInfo
) -> Iterator[tuple[IO[bytes] | None, str]]:
    """The tar stream a member holds (a nested archive), as `_opened_tar` gives it."""
    extracted = tar.extractfile(member)
    if extracted is None:
        yield None, ""
        return
    with _opened_tar(extracted) as opened:
        yield opened


@contextlib.contextmanager
def _opened_tar(raw: IO[bytes]) -> Iterator[tuple[IO[bytes] | None, str]]:
    """A file's tar stream, decompressed, and its compression; None if it holds no tar."""
    head = _read_exactly(raw, 6)
    compression = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), "")
    with _decompressing(io.BufferedReader(_Rewound(head, raw)), compression) as stream:
        block = _read_exactly(stream, _TAR_HEADER)
        is_tar = len(block) == _TAR_HEADER and block[257:262] == b"ustar"
        yield (
            (io.BufferedReader(_Rewound(block, stream), _COPY_CHUNK) if is_tar else None),
            (compression),
        )


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
    if bundle.format == "dir":
        return lambda _: f"dir:{bundle.path}"
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
            f"unpacking {bundle.label} needs {size_text(bundle.temp_disk)} in {work_dir}, "
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
    with _members(bundle.path, bundle.compression) as tar:
        _write_layout(tar, layout)


def _write_layout(tar: tarfile.TarFile, layout: Path) -> None:
    """Write the layout's own files (index, blobs) from the archive; nothing else, no links."""
    for member in tar:
        name = _member_name(member)
        if member.isfile() and _own_file("oci", name):
            _write_member(tar, member, layout / name)


def _own_file(bundle_format: str, name: str) -> bool:
    """Whether a file is one of a layout's or `dir:` folder's own: nothing else is written."""
    if bundle_format == "dir":
        return bool(_DIR_FILE.match(name))
    return name in _KEEP or bool(_BLOB.match(name))


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    extracted = tar.extractfile(member)
    if extracted is not None:
        _write_stream(extracted, target)


def _write_stream(stream: IO[bytes], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        shutil.copyfileobj(stream, out, _COPY_CHUNK)


class PackageStream:
    """One pass over a package tarball, writing out each bundle inside it when it is needed.

    Each bundle goes to its own folder under `work_dir`, removed by
    `release` once its images are copied. Members of other wanted bundles
    met on the way are written too (a tar may interleave folders).
    """

    def __init__(
        self, path: Path, bundles: list[Bundle], work_dir: Path, log: Callable[[str], None]
    ):
        self.path = path
        self.wanted = {bundle.member: bundle for bundle in bundles}
        self.work_dir = work_dir
        self.log = log
        self.folders: dict[str, Path] = {}
        self.released: set[str] = set()
        self.position = -1
        self._stack = contextlib.ExitStack()
        self._tar: tarfile.TarFile | None = None
        self._members: Iterator[tarfile.TarInfo] = iter(())

    def close(self) -> None:
        """Stop reading; remove whatever is still written out."""
        self._stack.close()
        for folder in self.folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        self.folders.clear()

    def extract(self, bundle: Bundle) -> Bundle:
        """The bundle written out on its own, to be read in place (a layout, a tar, a folder)."""
        try:
            if self._tar is None:
                compression = compression_of(self.path)
                self._tar = self._stack.enter_context(_members(self.path, compression))
                self._members = iter(self._tar)
            while self.position < bundle.last_member:
                member = next(self._members, None)
                if member is None:
                    raise BundleError(f"{self.path} ended before {bundle.member}")
                self.position += 1
                if member.isfile():
                    self._write(self._tar, member)
        except BundleError:
            raise
        except _READ_ERRORS as e:
            raise BundleError(f"cannot unpack {bundle.label}: {e}") from None
        folder = self.folders.get(bundle.member)
        if folder is None:
            raise BundleError(f"{bundle.label} holds nothing to unpack")
        return dataclasses.replace(
            bundle,
            path=folder / _LOCAL_NAME[bundle.format],
            compression="",
            temp_disk=0,
            member="",
            member_kind="",
            last_member=-1,
        )

    def release(self, bundle: Bundle) -> None:
        """Remove what was written out for the bundle: its images are copied."""
        self.released.add(bundle.member)
        folder = self.folders.pop(bundle.member, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _owner(self, name: str) -> tuple[Bundle, str] | None:
        """The wanted bundle a member belongs to, and its name inside that bundle."""
        archive = self.wanted.get(name)
        if archive is not None and archive.member_kind == "archive":
            return archive, ""
        for parent in PurePosixPath(name).parents:
            folder = self.wanted.get(str(parent))
            if folder is not None and folder.member_kind == "folder":
                return folder, name[len(str(parent)) + 1 :]
        return None

    def _write(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        found = self._owner(_member_name(member))
        if found is None or found[0].member in self.released:
            return
        bundle, name = found
        folder = self.folders.get(bundle.member)
        if folder is None:
            _check_space(bundle, self.work_dir)
            folder = Path(tempfile.mkdtemp(prefix=".push-", dir=self.work_dir))
            self.folders[bundle.member] = folder
            self.log(f"unpacking {bundle.label} ({size_text(bundle.temp_disk)}) into {folder}")
        local = folder / _LOCAL_NAME[bundle.format]
        if bundle.member_kind == "archive":
            with _member_tar(tar, member) as (stream, _):
                if stream is None:
                    return
                if bundle.format == "docker":
                    _write_stream(stream, local)
                    return
                with tarfile.open(fileobj=stream, mode="r|") as inner:
                    _write_layout(inner, local)
        elif (
            _DIR_FILE.match(name) if bundle.format == "dir" else name in _KEEP or _BLOB.match(name)
        ):
            _write_member(tar, member, local / name)


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
