"""A unit of the packed charm on a booted machine (the machine tier's `Unit`).

Events and actions go to `tests/machine/driver.py`, which runs inside the
machine with the `.charm`'s interpreter and fires them with Scenario.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import scenario
import yaml

from support.nspawn import Machine
from support.wait import wait_for

CHARM_DIR = "/var/lib/juju/agents/unit-docker-registry-0/charm"
DRIVER_DIR = "/opt/machine-driver"
USER, PASSWORD = "admin", "machine-tier-password"
CREDS = f"{USER}:{PASSWORD}"
REGISTRY = "127.0.0.1:5000"
CA_DIR = "/root/ca"
"""Inside the unit: the test CA, for skopeo (`--cert-dir`) and the tests' HTTP requests."""
UPSTREAM_PORT = 5100
UPSTREAM_APP = f"docker://127.0.0.1:{UPSTREAM_PORT}/team/app:v1"
MIRRORS = yaml.safe_dump({"upstream.test": f"http://127.0.0.1:{UPSTREAM_PORT}"})
SERVICE_USER = "docker-registry"


class Unit:
    """A unit of the charm on a booted machine; events and actions go through the driver."""

    def __init__(self, machine: Machine):
        self.machine = machine
        self.answers: dict[str, dict] = {}
        """The last answer to each event, by its name."""
        self._driver: subprocess.Popen[str] | None = None

    def start_driver(self) -> None:
        self._driver = self.machine.popen(
            [f"{CHARM_DIR}/venv/bin/python", f"{DRIVER_DIR}/driver.py"],
            env={
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PYTHONPATH": f"{CHARM_DIR}/lib:{CHARM_DIR}/src:{DRIVER_DIR}",
                "LANG": "C.UTF-8",
            },
        )

    def stop_driver(self) -> None:
        """End the driver: it exits when its input ends (killed if it hangs)."""
        driver, self._driver = self._driver, None
        if driver is None:
            return
        assert driver.stdin is not None
        driver.stdin.close()
        try:
            driver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait(timeout=10)

    def _request(self, request: dict) -> dict:
        assert self._driver is not None
        assert self._driver.stdin
        assert self._driver.stdout
        self._driver.stdin.write(json.dumps(request) + "\n")
        self._driver.stdin.flush()
        line = self._driver.stdout.readline()
        if not line:
            log = (self.machine.workdir / "driver.log").read_text(errors="replace")
            raise AssertionError(f"the driver died: {log[-3000:]}")
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"the charm raised:\n{answer['error']}")
        return answer

    def event(
        self,
        name: str,
        options: dict | None = None,
        *,
        leader: bool | None = None,
        peer_app_data: dict[str, str] | None = None,
        **config: object,
    ) -> dict:
        """Fire a Juju event, some options (or leadership, or the peer app data) changed first.

        `config` names options with underscores for dashes; `options` as they
        are. Returns the status after.
        """
        options = {**(options or {}), **{k.replace("_", "-"): v for k, v in config.items()}}
        request: dict = {"event": name, "config": options}
        if leader is not None:
            request["leader"] = leader
        if peer_app_data is not None:
            request["peer_app_data"] = peer_app_data
        self.answers[name] = self._request(request)
        return self.answers[name]

    def subordinate(self, endpoint: str, *, joined: bool, **remote: str) -> dict:
        """Relate a subordinate on `endpoint` (its unit data `remote`), or break the relation."""
        return self._request({"subordinate": endpoint, "joined": joined, "remote": remote})

    def attach_images(self, inside: str) -> dict:
        """`juju attach-resource docker-registry images=...`: the file, then upgrade-charm."""
        request = {"event": "upgrade_charm", "config": {}, "images_resource": inside}
        self.answers["upgrade_charm"] = self._request(request)
        return self.answers["upgrade_charm"]

    def relate(self, endpoint: str) -> dict:
        """Relate a subordinate to `endpoint`; the unit's status and its databag after."""
        return self._request({"relate": endpoint})

    def unrelate(self, endpoint: str) -> dict:
        """Remove `endpoint`'s relation (relation-broken, then config-changed without it)."""
        return self._request({"unrelate": endpoint})

    def storage(self, event: str) -> dict:
        """Fire storage_attached or storage_detaching for the `data` storage."""
        return self._request({"storage": event})

    def action(self, name: str, **params: object) -> dict:
        options = {key.replace("_", "-"): value for key, value in params.items()}
        return self._request({"action": name, "params": options})

    def reboot(self) -> None:
        self.stop_driver()
        self.machine.reboot()
        self.start_driver()

    def main_pid(self, service: str = "docker-registry") -> int:
        done = self.machine.run(["systemctl", "show", "-P", "MainPID", service])
        return int(done.stdout.strip())

    def starts(self, service: str) -> int:
        """How often systemd started `service` since boot (from its journal)."""
        journal = self.machine.run(
            ["journalctl", "--no-pager", "-o", "cat", "-u", f"{service}.service"], check=False
        ).stdout
        return sum(1 for line in journal.splitlines() if line.startswith("Started "))

    def push_layout(self, layout: Path, name: str) -> str:
        """Copy an OCI layout from the host into the unit; its path there."""
        inside = f"/root/images/{name}"
        shutil.copytree(layout, self.machine.path(inside))
        return inside


def unpack_charm(charm: Path, target: Path) -> Path:
    """Unpack a `.charm` into `target`; its interpreter, linked as `dispatch` links it."""
    with zipfile.ZipFile(charm) as archive:
        archive.extractall(target)
    python = target / "venv/bin/python"
    python.parent.mkdir(parents=True, exist_ok=True)
    if not python.is_symlink():
        python.symlink_to("/usr/bin/python3")
    return python


def install_charm(machine: Machine, charm: Path) -> None:
    """Unpack the `.charm` where a unit keeps it, and the driver with Scenario beside it."""
    unpack_charm(charm, machine.path(CHARM_DIR))
    driver = machine.path(DRIVER_DIR)
    driver.mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "machine" / "driver.py", driver)
    shutil.copytree(Path(scenario.__file__).parent, driver / "scenario")


def skopeo_digest(
    machine: Machine,
    ref: str,
    *,
    creds: str | None = CREDS,
    tls: bool = True,
    cert_dir: str = CA_DIR,
) -> str:
    """Pull `ref` with skopeo inside the unit (every blob) and return its manifest digest.

    `cert_dir` holds the CA (`ca.crt`) and any client certificate (`*.cert`, `*.key`).
    """
    options = ["--cert-dir", cert_dir] if tls else ["--tls-verify=false"]
    if creds:
        options += ["--creds", creds]
    machine.run(["rm", "-rf", "/tmp/pulled"])
    copy_options = [option.replace("--", "--src-", 1) for option in options]
    machine.run(["skopeo", "copy", *copy_options, f"docker://{ref}", "oci:/tmp/pulled:x"])
    inspect = ["skopeo", "inspect", *options, "--format", "{{.Digest}}", f"docker://{ref}"]
    return machine.run(inspect).stdout.strip()


def start_upstream(unit: Unit) -> None:
    """A plain registry inside the unit for cache-mirrors to fetch from (`UPSTREAM_APP`).

    Run from the Debian package's binary, unpacked (not installed: that is
    the charm's job).

    A service enabled at boot: a pull-through cache exits when its upstream
    does not answer as it starts (Distribution 2.8), so after a reboot the
    mirror's cache needs it.
    """
    config = {
        "version": 0.1,
        "http": {"addr": f"127.0.0.1:{UPSTREAM_PORT}"},
        "storage": {"filesystem": {"rootdirectory": "/var/lib/upstream"}},
    }
    unit.machine.run(
        ["sh", "-c", "dpkg-deb -x /var/local/debs/docker-registry_*.deb /opt/upstream"]
    )
    unit.machine.path("/etc/upstream.yml").write_text(yaml.safe_dump(config))
    unit.machine.path("/etc/systemd/system/upstream.service").write_text(
        "[Service]\nExecStart=/opt/upstream/usr/bin/docker-registry serve /etc/upstream.yml\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    unit.machine.run(["systemctl", "enable", "--now", "upstream"])
    wait_for(
        lambda: unit.machine.http(f"http://127.0.0.1:{UPSTREAM_PORT}/v2/")[0] == 200,
        what="the upstream registry",
    )
