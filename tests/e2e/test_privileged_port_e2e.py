"""A registry port below 1024 (443 for a published registry), end to end.

The charm serves on such a port through `LocalMachine` (whose services run
as the test's user, root here). Then the registry runs as systemd would run
it on a unit: as the service user, with exactly the ambient capabilities the
rendered drop-in grants (`setpriv` does what systemd does with
`AmbientCapabilities=`). Without them the same command cannot bind.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from charm_context import unit_state
from support.wait import free_privileged_port, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
    ),
]
SERVICE_USER = "docker-registry"


@pytest.fixture
def privileged_port() -> int:
    port = free_privileged_port()
    if port is None:
        pytest.skip("no free port below 1024 on 127.0.0.1")
    return port


@pytest.fixture
def as_service_user() -> Iterator[list[subprocess.Popen]]:
    """Processes started as the service user; stopped when the test ends."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait(timeout=10)


def setpriv(capabilities: list[str], argv: list[str]) -> list[str]:
    """`argv` as the service user, no other group, with `capabilities` ambient."""
    caps = ",".join(f"+{cap.removeprefix('CAP_').lower()}" for cap in capabilities)
    user = pwd.getpwnam(SERVICE_USER)
    command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    if caps:
        command += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
    return [*command, *argv]


def answers(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as response:
        return response.status == 200


def test_a_port_below_1024_serves_with_the_drop_in_capability(
    ctx, machine, privileged_port, as_service_user
):
    state = ctx.run(ctx.on.install(), unit_state(privileged_port))
    assert state.unit_status.message == f"Ready at 127.0.0.1:{privileged_port} (http)."
    assert answers(privileged_port)

    dropin = machine.root / "etc/systemd/system/docker-registry.service.d/10-juju.conf"
    capabilities = re.findall(r"^AmbientCapabilities=(.+)$", dropin.read_text(), re.M)
    assert capabilities == ["CAP_NET_BIND_SERVICE"]
    machine.stop("docker-registry")
    machine.root.chmod(0o755)  # the service user walks to its config, as on a unit
    config = str(machine.root / "etc/docker/registry/config.yml")
    serve = ["docker-registry", "serve", config]

    denied = subprocess.run(
        setpriv([], serve), capture_output=True, text=True, timeout=30, check=False
    )
    assert denied.returncode != 0
    assert "bind: permission denied" in denied.stdout + denied.stderr

    registry = subprocess.Popen(
        setpriv(capabilities[0].split(), serve),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    as_service_user.append(registry)
    wait_for(
        lambda: answers(privileged_port),
        what="the registry, as its service user, on a port below 1024",
        ignore=(OSError,),
    )
    assert registry.poll() is None
