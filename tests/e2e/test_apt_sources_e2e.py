"""install_sources with install_keys, read by the real apt: an air-gapped archive mirror.

A signed flat repository (a package, Packages, Release, InRelease clearsigned
by a fresh key) stands in for the site's mirror. The charm's workload writes
the sources list and key for the options; apt, on a private state folder (the
host's own sources and lists are untouched), updates from it verifying the
signature and finds the package. With another key apt refuses the mirror.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from state.config import CharmConfig
from state.packages import plan_packages
from workload.packages import apply_sources

pytestmark = pytest.mark.e2e
PACKAGE = "charm-mirror-probe"


def run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, env=env or None
    )


def new_key(home: Path, name: str) -> str:
    """A fresh signing key in `home`; its armoured public key."""
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    made = run(
        "gpg", "--batch", "--passphrase", "", "--quick-gen-key", name, "ed25519", "sign", "never",
        env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    exported = run("gpg", "--armor", "--export", name, env=env)
    assert exported.returncode == 0, exported.stderr
    return exported.stdout


def signed_repository(repo: Path, gnupg: Path) -> None:
    """One package, indexed and clearsigned with the key in `gnupg`."""
    build = repo.parent / "build"
    (build / "DEBIAN").mkdir(parents=True)
    (build / "DEBIAN/control").write_text(
        f"Package: {PACKAGE}\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: Test <t@test>\nDescription: probe\n"
    )
    repo.mkdir()
    deb = repo / f"{PACKAGE}_1.0_all.deb"
    built = run("dpkg-deb", "--root-owner-group", "--build", str(build), str(deb))
    assert built.returncode == 0, built.stderr
    control = run("dpkg-deb", "-f", str(deb)).stdout
    data = deb.read_bytes()
    packages = (
        f"{control.rstrip()}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n\n"
    )
    (repo / "Packages").write_text(packages)
    release = (
        f"Origin: mirror\nLabel: mirror\nDate: {email.utils.formatdate(usegmt=True)}\n"
        f"SHA256:\n {hashlib.sha256(packages.encode()).hexdigest()} {len(packages)} Packages\n"
    )
    (repo / "Release").write_text(release)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    signed = run(
        "gpg", "--batch", "--clearsign", "-o", str(repo / "InRelease"), str(repo / "Release"),
        env=env,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr


def apt(root: Path, state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """apt reading only the unit root's sources.list.d, with lists and cache in `state`."""
    (state / "lists/partial").mkdir(parents=True, exist_ok=True)
    (state / "cache/archives/partial").mkdir(parents=True, exist_ok=True)
    options = {
        "Dir::Etc::SourceList": "/dev/null",
        "Dir::Etc::SourceParts": str(root / "etc/apt/sources.list.d"),
        "Dir::State::Lists": str(state / "lists"),
        "Dir::Cache": str(state / "cache"),
        "APT::Sandbox::User": "root",
        "Debug::NoLocking": "true",
    }
    flags = [f"-o{name}={value}" for name, value in options.items()]
    return run(argv[0], *flags, *argv[1:])


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Callable[[str, str], str]]:
    """Makes signing keys, each in a GnuPG home of its own; stops their gpg-agents after."""
    homes: list[Path] = []

    def make(home: str, name: str) -> str:
        homes.append(tmp_path / home)
        return new_key(tmp_path / home, name)

    yield make
    for home in homes:
        run("gpgconf", "--homedir", str(home), "--kill", "all")


@pytest.fixture
def mirror(tmp_path: Path, keys: Callable[[str, str], str]) -> tuple[Path, str]:
    """A signed repository and the armoured key that signs it."""
    key = keys("gnupg", "Archive Mirror <mirror@test>")
    signed_repository(tmp_path / "repo", tmp_path / "gnupg")
    return tmp_path / "repo", key


def write_sources(root: Path, repo: Path, key: str) -> None:
    config = CharmConfig(
        install_sources=yaml.safe_dump([f"deb file:{repo} ./"]),
        install_keys=yaml.safe_dump([key]),
    )
    assert apply_sources(plan_packages(config.apt_sources, (), hold=False, root=root))


def test_apt_reads_the_mirror_with_its_key(mirror, tmp_path):
    repo, key = mirror
    write_sources(tmp_path / "unit", repo, key)
    updated = apt(tmp_path / "unit", tmp_path / "apt", "apt-get", "update")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "W:" not in updated.stderr, updated.stderr
    policy = apt(tmp_path / "unit", tmp_path / "apt", "apt-cache", "policy", PACKAGE)
    assert "Candidate: 1.0" in policy.stdout, policy.stdout


def test_apt_refuses_the_mirror_with_another_key(mirror, keys, tmp_path):
    repo, _ = mirror
    other = keys("other-gnupg", "Someone Else <else@test>")
    write_sources(tmp_path / "unit", repo, other)
    updated = apt(tmp_path / "unit", tmp_path / "apt", "apt-get", "update")
    assert updated.returncode != 0
    assert "is not signed" in updated.stderr or "NO_PUBKEY" in updated.stderr, updated.stderr
    policy = apt(tmp_path / "unit", tmp_path / "apt", "apt-cache", "policy", PACKAGE)
    assert "Candidate: 1.0" not in policy.stdout
