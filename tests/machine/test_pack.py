"""The `.charm` holds what a unit needs, and its code imports the way `dispatch` runs it."""

from __future__ import annotations

import stat
import subprocess
import zipfile
from pathlib import Path

from charm_context import PROJECT
from machine_unit import unpack_charm


def test_the_charm_holds_its_files_and_a_venv(packed_charm: Path):
    with zipfile.ZipFile(packed_charm) as archive:
        names = set(archive.namelist())
        dispatch_mode = archive.getinfo("dispatch").external_attr >> 16
    tracked = subprocess.run(
        ["git", "ls-files", "src", "templates"], cwd=PROJECT, capture_output=True, text=True,
        check=True,
    ).stdout.split()  # fmt: skip
    expected = {"metadata.yaml", "config.yaml", "actions.yaml", "manifest.yaml", *tracked}
    assert expected <= names, sorted(expected - names)
    assert dispatch_mode & stat.S_IXUSR
    site_packages = {name.split("/")[4] for name in names if name.startswith("venv/lib/python3")}
    for package in ("ops", "jinja2", "cryptography", "bcrypt", "yaml", "charmlibs"):
        assert package in site_packages, package
    assert not any(name.startswith(("tests/", ".venv/", "bench/")) for name in names)


def test_the_charm_imports_as_dispatch_runs_it(packed_charm: Path, tmp_path: Path):
    python = unpack_charm(packed_charm, tmp_path)
    done = subprocess.run(
        [str(python), "-c", "import charm; print(charm.DockerRegistryCharm.__name__)"],
        env={"PYTHONPATH": f"{tmp_path}/lib:{tmp_path}/src", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "DockerRegistryCharm"
