"""The established charm's layer:apt options: extra packages, their dpkg status, apt sources.

Validated here, applied by `workload/packages.py`. Sources are what an
air-gapped site needs: `deb` lines for a mirror of the archive, each with the
ASCII-armoured key that signs it (or none, for a line that names its own
`signed-by` or an archive the unit already trusts). PPAs, Ubuntu Cloud Archive
pockets and key ids need Launchpad or a keyserver: refused, naming the option.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+\Z")
"""A Debian package name."""
PACKAGE_STATUSES = ("install", "hold")
DEB_LINE = re.compile(r"deb(-src)? (\[[^\]\n]*\] )?[a-z][a-z0-9+.-]*:\S+( \S+)+\Z")
ARMOURED_KEY = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\n.+\n-----END PGP PUBLIC KEY BLOCK-----\s*\Z", re.S
)


SOURCES_PATH = "/etc/apt/sources.list.d/docker-registry-charm.list"
KEYRING_DIR = "/etc/apt/keyrings"
KEY_PREFIX = "docker-registry-charm-"
"""The keys the charm writes are named so: the only ones in the folder it removes."""
SIGNED_BY = re.compile(r"\[[^\]]*\bsigned-by=")


@dataclass(frozen=True)
class AptSource:
    """One `deb` line and the armoured key that signs its archive (None: trusted already)."""

    line: str
    key: str | None = field(default=None, repr=False)


def extra_packages(value: str) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """The packages named in the space-separated `extra_packages`, or the problem."""
    names = tuple(value.split())
    bad = [name for name in names if not PACKAGE_NAME.match(name)]
    if bad:
        return (), [("extra_packages", f"{bad[0][:64]!r} is not a Debian package name")]
    return names, []


def _yaml_list(value: str, option: str) -> tuple[list, list[tuple[str, str]]]:
    """layer:apt's format: a YAML list of strings in a string (one string: a list of one)."""
    if not value.strip():
        return [], []
    try:
        loaded = yaml.safe_load(value)
    except yaml.YAMLError:
        return [], [(option, "is not YAML (a list of strings)")]
    items = loaded if isinstance(loaded, list) else [loaded]
    if not all(item is None or isinstance(item, str) for item in items):
        return [], [(option, "must be a YAML list of strings")]
    return items, []


def apt_sources(sources: str, keys: str) -> tuple[tuple[AptSource, ...], list[tuple[str, str]]]:
    """`install_sources` paired with `install_keys` (by position), or the problems."""
    lines, problems = _yaml_list(sources, "install_sources")
    armoured, key_problems = _yaml_list(keys, "install_keys")
    problems += key_problems
    if problems:
        return (), problems
    if len(armoured) > len(lines):
        return (), [("install_keys", "has more entries than install_sources")]
    result: list[AptSource] = []
    for index, line in enumerate(lines):
        line = re.sub(r"[ \t]+", " ", (line or "").strip())  # a newline stays: refused
        key = armoured[index] if index < len(armoured) else None
        if not DEB_LINE.match(line):
            problems.append(
                (
                    "install_sources",
                    f"entry {index + 1} is not a 'deb URI suite component...' line"
                    " (PPAs and cloud archive pockets need Launchpad: not supported)",
                )
            )
        if key and not ARMOURED_KEY.match(key.strip() + "\n"):
            problems.append(
                (
                    "install_keys",
                    f"entry {index + 1} is not an ASCII-armoured PGP public key"
                    " (key ids need a keyserver: not supported)",
                )
            )
        result.append(AptSource(line, key.strip() + "\n" if key else None))
    return (tuple(result), []) if not problems else ((), problems)


@dataclass(frozen=True)
class PackagePlan:
    """What layer:apt's options ask of the unit's apt and dpkg."""

    sources_path: Path
    sources_list: str | None
    """The charm's sources.list file; None: no file."""
    keyring_dir: Path
    keys: dict[Path, str] = field(repr=False)
    """Each source's armoured key, by the path its line's signed-by names."""
    extra: tuple[str, ...]
    hold: bool

    @property
    def fingerprint(self) -> str:
        """Changes whenever the sources, keys or extra packages do: then apt must run again."""
        digest = hashlib.sha256(
            repr((self.sources_list, sorted(self.keys.items()), self.extra)).encode()
        )
        return digest.hexdigest()


def signed_line(line: str, key_path: str) -> str:
    """`line` with `signed-by=key_path` among its options (unless it names its own key)."""
    if SIGNED_BY.search(line):
        return line
    kind, _, rest = line.partition(" ")
    if rest.startswith("["):
        return f"{kind} [signed-by={key_path} {rest[1:]}"
    return f"{kind} [signed-by={key_path}] {rest}"


def plan_packages(
    sources: tuple[AptSource, ...], extra: tuple[str, ...], *, hold: bool, root: Path
) -> PackagePlan:
    """The sources list with each key in a keyring file of its own; the packages to add."""
    keys: dict[Path, str] = {}
    lines = ["# Managed by the docker-registry charm (install_sources); changes are overwritten."]
    for index, source in enumerate(sources, start=1):
        line = source.line
        if source.key:
            key_path = root / KEYRING_DIR.lstrip("/") / f"{KEY_PREFIX}{index}.asc"
            keys[key_path] = source.key
            line = signed_line(line, str(key_path))
        lines.append(line)
    return PackagePlan(
        sources_path=root / SOURCES_PATH.lstrip("/"),
        sources_list="\n".join(lines) + "\n" if sources else None,
        keyring_dir=root / KEYRING_DIR.lstrip("/"),
        keys=keys,
        extra=extra,
        hold=hold,
    )
