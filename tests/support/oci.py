"""Build OCI image layouts in pure Python, byte-for-byte reproducibly.

Tests need images without a Docker daemon or network: these layouts feed `skopeo copy oci:...`.
Identical input gives identical digests (fixed tar metadata, gzip header without mtime), so
images built separately can share base layers and tests can assert exact digests.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import lzma
import os
import struct
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import zstandard

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

# Fixed, non-zero mtime: some tools treat 0 as "unset".
_FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z
_CREATED = "2000-01-01T00:00:00Z"


@dataclass(frozen=True)
class Layer:
    """A compressed layer blob and the digests a manifest and config need."""

    digest: str  # sha256 of the gzip blob (manifest "layers")
    diff_id: str  # sha256 of the uncompressed tar (config "rootfs.diff_ids")
    size: int  # size of the gzip blob
    data: bytes


LayerSpec = Mapping[str, bytes] | Layer
StrPath = str | os.PathLike[str]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_bytes(size: int, seed: int | str = 0) -> bytes:
    """Deterministic, incompressible bytes (SHAKE-256 stream), stable across Python versions."""
    return hashlib.shake_256(f"random-layer:{seed}".encode()).digest(size)


def random_layer(size: int, seed: int | str = 0, path: str | None = None) -> dict[str, bytes]:
    """A one-file layer of `size` incompressible bytes, so blob sizes on the wire are real."""
    return {path or f"data/random-{seed}.bin": random_bytes(size, seed)}


def _gzip(data: bytes, level: int) -> bytes:
    """Gzip with a fixed header (no name, mtime 0, OS=unknown) for reproducible digests.

    `gzip.compress` writes a different OS byte on different Python versions, so build it here.
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(data) + compressor.flush()
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x00\xff"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def _tar(files: Mapping[str, bytes]) -> bytes:
    """A tar with parent directories, sorted entries and fixed owner/mode/mtime."""
    paths: dict[str, bytes | None] = {}
    for raw_path, content in files.items():
        path = PurePosixPath(raw_path.lstrip("/"))
        if not path.parts or ".." in path.parts:
            raise ValueError(f"bad layer path: {raw_path!r}")
        for parent in reversed(path.parents[:-1]):
            paths.setdefault(str(parent), None)
        paths[str(path)] = content
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(paths):
            content = paths[name]
            info = tarfile.TarInfo(name)
            info.mtime = _FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def make_layer(files: Mapping[str, bytes], *, compresslevel: int = 6) -> Layer:
    """Build a gzip layer in memory; reuse the result to share a base layer between images."""
    tar = _tar(files)
    blob = _gzip(tar, compresslevel)
    return Layer(digest=sha256_digest(blob), diff_id=sha256_digest(tar), size=len(blob), data=blob)


def _write_blob(layout: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return digest


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def write_layer(layout_dir: StrPath, layer: LayerSpec) -> Layer:
    """Store a layer blob in the layout (idempotent) and return its descriptor data."""
    built = layer if isinstance(layer, Layer) else make_layer(layer)
    _write_blob(Path(layout_dir), built.data)
    return built


def build_image(
    layout_dir: StrPath,
    ref_name: str = "latest",
    files: Mapping[str, bytes] | None = None,
    *,
    layers: Sequence[LayerSpec] | None = None,
    architecture: str = "amd64",
    os: str = "linux",
    variant: str | None = None,
    config: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Add an image tagged `ref_name` to an OCI layout and return its manifest digest.

    Give either `files` (one layer) or `layers` (bottom first; each a path->bytes mapping or a
    prebuilt `Layer`). Re-using a ref name replaces that tag; other tags stay in `index.json`.
    `config` is the image's runtime config (Env, Cmd, Labels...).
    """
    if (files is None) == (layers is None):
        raise ValueError("pass exactly one of files= or layers=")
    layout = Path(layout_dir)
    layout.mkdir(parents=True, exist_ok=True)
    specs: Sequence[LayerSpec] = [files] if files is not None else list(layers or [])
    built = [write_layer(layout, spec) for spec in specs]

    image_config: dict[str, Any] = {
        "architecture": architecture,
        "os": os,
        "created": _CREATED,
        "config": dict(config or {}),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in built]},
        "history": [{"created": _CREATED, "created_by": "tests.support.oci"} for _ in built],
    }
    if variant:
        image_config["variant"] = variant
    config_bytes = _canonical_json(image_config)
    config_digest = _write_blob(layout, config_bytes)

    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {
            "mediaType": MEDIA_TYPE_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": MEDIA_TYPE_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
            for layer in built
        ],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    manifest_bytes = _canonical_json(manifest)
    manifest_digest = _write_blob(layout, manifest_bytes)

    descriptor: dict[str, Any] = {
        "mediaType": MEDIA_TYPE_MANIFEST,
        "digest": manifest_digest,
        "size": len(manifest_bytes),
        "annotations": {REF_NAME_ANNOTATION: ref_name},
        "platform": {"architecture": architecture, "os": os},
    }
    if variant:
        descriptor["platform"]["variant"] = variant
    _update_index(layout, ref_name, descriptor)
    return manifest_digest


def _update_index(layout: Path, ref_name: str, descriptor: dict[str, Any]) -> None:
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = layout / "index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
    else:
        index = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": []}
    index["manifests"] = [
        entry
        for entry in index.get("manifests", [])
        if entry.get("annotations", {}).get(REF_NAME_ANNOTATION) != ref_name
    ] + [descriptor]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True))


def read_blob(layout_dir: StrPath, digest: str) -> bytes:
    """Return a blob's bytes from a layout, e.g. to compare with what a registry serves."""
    algo, hexdigest = digest.split(":", 1)
    return (Path(layout_dir) / "blobs" / algo / hexdigest).read_bytes()


def layout_ref(layout_dir: StrPath, ref_name: str = "latest") -> str:
    """The skopeo/containers-image reference for a tag in a layout: `oci:DIR:REF`."""
    return f"oci:{Path(layout_dir)}:{ref_name}"


def build_index(layout_dir: StrPath, ref_name: str, platform_refs: Sequence[str]) -> str:
    """Gather images of the layout (by ref name) into a multi-arch index tagged `ref_name`.

    The platform images leave `index.json`; only the index names them. Returns its digest.
    """
    layout = Path(layout_dir)
    index = json.loads((layout / "index.json").read_text())
    by_ref = {m["annotations"][REF_NAME_ANNOTATION]: m for m in index["manifests"]}
    children = []
    for ref in platform_refs:
        child = dict(by_ref[ref])
        child.pop("annotations", None)
        children.append(child)
    image_index = _canonical_json(
        {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": children}
    )
    digest = _write_blob(layout, image_index)
    index["manifests"] = [
        m for m in index["manifests"] if m["annotations"][REF_NAME_ANNOTATION] not in platform_refs
    ]
    (layout / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True))
    descriptor = {
        "mediaType": MEDIA_TYPE_INDEX,
        "digest": digest,
        "size": len(image_index),
        "annotations": {REF_NAME_ANNOTATION: ref_name},
    }
    _update_index(layout, ref_name, descriptor)
    return digest


def annotate(layout_dir: StrPath, ref_name: str, annotations: Mapping[str, str]) -> None:
    """Add annotations to the index.json entry of `ref_name` (e.g. containerd's image name)."""
    index_path = Path(layout_dir) / "index.json"
    index = json.loads(index_path.read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get(REF_NAME_ANNOTATION) == ref_name:
            entry["annotations"] = {**entry["annotations"], **annotations}
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True))


def write_archive(
    source_dir: StrPath, path: StrPath, *, compression: str = "", skip: Sequence[str] = ()
) -> Path:
    """Tar a folder as `tar -C DIR .` does ("./" names), plain or gzip, xz, bzip2, zstd.

    `skip` leaves out members by name (e.g. a platform's blobs, as `ctr export` does).
    """
    source, target = Path(source_dir), Path(path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in sorted(source.rglob("*")):
            name = member.relative_to(source).as_posix()
            if name not in skip:
                tar.add(member, arcname=f"./{name}", recursive=False)
    target.write_bytes(compress(buf.getvalue(), compression))
    return target


def compress(data: bytes, compression: str) -> bytes:
    """`data` compressed as bundles come: "" (as is), gzip, xz, bzip2 or zstd."""
    if compression == "gzip":
        return _gzip(data, 6)
    if compression == "xz":
        return lzma.compress(data)
    if compression == "bzip2":
        return bz2.compress(data)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if compression:
        raise ValueError(f"unknown compression {compression!r}")
    return data


def write_docker_save(
    layout_dir: StrPath, path: StrPath, images: Mapping[str, Sequence[str]]
) -> Path:
    """A legacy `docker save` archive of layout images: ref name -> RepoTags (may be empty).

    manifest.json, `<config hex>.json` and `<layer>/layer.tar` (uncompressed), no index.json.
    """
    layout = Path(layout_dir)
    index = json.loads((layout / "index.json").read_text())
    by_ref = {m["annotations"][REF_NAME_ANNOTATION]: m["digest"] for m in index["manifests"]}
    files: dict[str, bytes] = {}
    entries = []
    for ref, tags in images.items():
        manifest = json.loads(read_blob(layout, by_ref[ref]))
        config_name = manifest["config"]["digest"].split(":", 1)[1] + ".json"
        files[config_name] = read_blob(layout, manifest["config"]["digest"])
        layers = []
        for layer in manifest["layers"]:
            name = layer["digest"].split(":", 1)[1] + "/layer.tar"
            files[name] = zlib.decompress(read_blob(layout, layer["digest"]), zlib.MAX_WBITS | 16)
            layers.append(name)
        entries.append({"Config": config_name, "RepoTags": list(tags) or None, "Layers": layers})
    files["manifest.json"] = json.dumps(entries).encode()
    target = Path(path)
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = _FIXED_MTIME
            tar.addfile(info, io.BytesIO(content))
    return target
