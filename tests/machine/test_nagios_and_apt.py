"""The established layers' options on a real unit: NRPE files as nagios reads them, dpkg holds.

One unit, related to an nrpe subordinate (whose folders and `nagios` user the
test makes, as the nrpe charm's install does). The published command is run
as `nagios` through `sh -c`, as the nrpe daemon runs it, with the host's
check_http (Debian's; the unit's libc, libssl and libcrypto are the same).
"""

from __future__ import annotations

import shutil

import pytest

from machine_unit import REGISTRY, Unit

PLUGIN = "/usr/lib/nagios/plugins/check_http"
CHECK_FILE = "/etc/nagios/nrpe.d/check_check_http.cfg"
SERVICE_FILE = "/var/lib/nagios/export/service__docker-registry-0_check_http.cfg"
ENDPOINT = "nrpe-external-master"


@pytest.fixture(scope="module")
def unit(new_unit) -> Unit:
    if shutil.which(PLUGIN) is None:
        pytest.skip("monitoring-plugins-basic is not installed (scripts/install-test-deps)")
    unit = new_unit()
    machine = unit.machine
    machine.run(["useradd", "--system", "--no-create-home", "nagios"])
    machine.run(["install", "-d", "-o", "nagios", "/etc/nagios/nrpe.d", "/var/lib/nagios/export"])
    plugin = machine.path(PLUGIN)
    plugin.parent.mkdir(parents=True)
    shutil.copy2(PLUGIN, plugin)
    unit.event("install", {"package_status": "hold"})
    return unit


def held(unit: Unit) -> set[str]:
    return set(unit.machine.run(["apt-mark", "showhold"]).stdout.split())


def test_hold_holds_the_charms_packages_in_dpkg_and_install_releases_them(unit: Unit):
    assert held(unit) == {"docker-registry", "skopeo"}
    unit.event("config_changed", {"package_status": "install"})
    assert held(unit) == set()


def test_nagios_runs_the_published_check_and_the_files_go_with_the_relation(unit: Unit):
    machine = unit.machine
    answer = unit.subordinate(ENDPOINT, joined=True, nagios_hostname="unit0")
    assert answer["status"] == "active"
    for path in (CHECK_FILE, SERVICE_FILE):
        assert machine.stat(path) == ("root", "root", 0o644), path
    text = machine.path(CHECK_FILE).read_text()
    command = text.split("command[check_http]=", 1)[1].strip()
    assert f"-p {REGISTRY.rpartition(':')[2]}" in command
    checked = machine.run(["runuser", "-u", "nagios", "--", "sh", "-c", command], check=False)
    assert (checked.returncode, checked.stdout[:7]) == (0, "HTTP OK"), checked.stdout
    unit.subordinate(ENDPOINT, joined=False)
    assert not machine.exists(CHECK_FILE)
    assert not machine.exists(SERVICE_FILE)
    assert machine.exists("/etc/nagios/nrpe.d")
