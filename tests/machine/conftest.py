"""The machine tier: the packed charm on a booted Debian systemd machine.

Each test module gets fresh units (containers copied from the cached root file
system). The charm's files are the `.charm`'s, run by its own interpreter as
`dispatch` would; Scenario (`tests/machine/driver.py`) fires the events, and
the real `UbuntuMachine` does apt and systemd inside the container.

Heavy: it takes /tmp/heavy.lock for the whole session (unless HEAVY_LOCK=held
says a parent holds it). MACHINE_KEEP=1 keeps the containers' files and
prints how to boot one again.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from machine_unit import Unit, install_charm
from support import oci
from support.nspawn import DOCKER_CAPABLE, Machine

PROJECT = Path(__file__).resolve().parent.parent.parent
WORKDIR = Path(os.environ.get("MACHINE_WORKDIR", "/var/tmp/docker-registry-machines"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.machine)


def _script(name: str) -> Path:
    """Run one of scripts/ (they print a path last); the lock is ours already."""
    done = subprocess.run(
        [str(PROJECT / "scripts" / name)],
        capture_output=True,
        text=True,
        env={**os.environ, "HEAVY_LOCK": "held"},
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/{name} failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _missing_prerequisite() -> str | None:
    """Why this host cannot run the tier, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, systemd-nspawn, mounts)"
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "unshare", "dpkg"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-test-deps installs it)"
    return None


@pytest.fixture(scope="session")
def heavy_lock() -> Iterator[None]:
    """Take turns with the other heavy jobs on this shared machine."""
    if os.environ.get("HEAVY_LOCK") == "held":
        yield
        return
    with open("/tmp/heavy.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def rootfs(heavy_lock: None) -> Path:
    if why := _missing_prerequisite():
        pytest.skip(f"machine tier: {why}")
    return _script("machine-rootfs")


@pytest.fixture(scope="session")
def packed_charm(heavy_lock: None) -> Path:
    """The `.charm` the tier installs: $CHARM_FILE, or packed now by scripts/pack-charm."""
    if given := os.environ.get("CHARM_FILE"):
        return Path(given)
    if why := _missing_prerequisite():
        pytest.skip(f"packing: {why}")
    has_apt = subprocess.run(["/usr/bin/python3", "-c", "import apt_pkg"], check=False)
    if has_apt.returncode != 0:
        pytest.skip("packing: charmcraft needs the system python3 with python3-apt")
    return _script("pack-charm")


@pytest.fixture(scope="module")
def new_unit(rootfs: Path, packed_charm: Path) -> Iterator[Callable[..., Unit]]:
    """Boots fresh machines with the charm on them; all are destroyed after the module."""
    WORKDIR.mkdir(parents=True, exist_ok=True)
    units: list[Unit] = []

    def boot(*, docker: bool = False) -> Unit:
        """A new unit; `docker` lets Docker run inside it."""
        workdir = Path(tempfile.mkdtemp(prefix="unit-", dir=WORKDIR))
        options = DOCKER_CAPABLE if docker else ([], {})
        machine = Machine(rootfs, workdir, name=f"unit{len(units)}", nspawn=options)
        unit = Unit(machine)
        units.append(unit)  # torn down even if booting fails
        install_charm(machine, packed_charm)
        machine.boot()
        unit.start_driver()
        return unit

    yield boot
    keep = os.environ.get("MACHINE_KEEP") == "1"
    for unit in units:
        unit.stop_driver()
        if keep:
            unit.machine.poweroff()
            print(
                f"\nkept {unit.machine.root}: boot it with systemd-nspawn --boot -D "
                f"{unit.machine.root} --register=no --keep-unit --private-network",
                file=sys.stderr,
            )
        else:
            unit.machine.destroy()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Three small test images as OCI layouts on the host: name -> (layout, digest)."""
    built = {}
    for number in range(3):
        layout = tmp_path_factory.mktemp(f"image{number}")
        digest = oci.build_image(
            layout, "v1", files={f"data/{number}": oci.random_bytes(64 * 1024, seed=number)}
        )
        built[f"app{number}"] = (layout, digest)
    return built
