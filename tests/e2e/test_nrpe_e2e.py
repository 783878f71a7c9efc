"""The published NRPE commands, run as NRPE runs them, against the registry the charm starts.

Each command is read from the check file the charm wrote and run with
`/bin/sh -c`, as the nrpe daemon does, with `check_http`/`check_tcp` from
Debian's monitoring-plugins-basic.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from ops import testing

from charm_context import b64, unit_state
from support import pki
from support.registry import RegistryProcess

pytestmark = pytest.mark.e2e

OK, WARNING, CRITICAL = 0, 1, 2
CA = pki.make_ca("nrpe-e2e-ca")


def nrpe_unit(machine, port: int, config: dict) -> testing.State:
    """A unit related to an nrpe subordinate that has made its folders."""
    (machine.root / "etc/nagios/nrpe.d").mkdir(parents=True)
    (machine.root / "var/lib/nagios/export").mkdir(parents=True)
    relation = testing.SubordinateRelation("nrpe-external-master", remote_app_name="nrpe")
    return unit_state(port, config=config, relations=[testing.PeerRelation("peer"), relation])


def published(root: Path, name: str) -> str:
    """The command line of check `name`, as the nrpe daemon reads it."""
    text = (root / f"etc/nagios/nrpe.d/check_{name}.cfg").read_text()
    (line,) = (line for line in text.splitlines() if line.startswith(f"command[{name}]="))
    return line.partition("=")[2]


def run_check(command: str) -> tuple[int, str]:
    result = subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, result.stdout


def tls(days: int = 90) -> dict[str, str]:
    cert, key = pki.issue(CA, "127.0.0.1", ["127.0.0.1"], days=days)
    return {"tls-cert-blob": b64(cert), "tls-key-blob": b64(key), "tls-ca-blob": b64(CA.cert_pem)}


def check_status(root: Path, name: str) -> int:
    code, output = run_check(published(root, name))
    assert code in (OK, WARNING, CRITICAL), output
    return code


def test_check_http_is_ok_while_serving_and_critical_when_stopped(ctx, machine, port):
    state = ctx.run(ctx.on.install(), nrpe_unit(machine, port, {"auth-basic-password": "pw"}))
    assert state.unit_status.name == "active"
    code, output = run_check(published(machine.root, "check_http"))
    assert (code, output[:7]) == (OK, "HTTP OK")
    machine.stop("docker-registry")
    code, output = run_check(published(machine.root, "check_http"))
    assert code == CRITICAL
    assert "Connection refused" in output


def test_tls_checks_the_registry_and_its_certificate(ctx, machine, port):
    state = ctx.run(ctx.on.install(), nrpe_unit(machine, port, tls()))
    assert state.unit_status.name == "active"
    assert check_status(machine.root, "check_http") == OK
    assert check_status(machine.root, "docker_registry_certificate") == OK
    # A certificate valid for 10 more days: inside the 14-day warning.
    state = ctx.run(
        ctx.on.config_changed(),
        dataclasses.replace(state, config={**state.config, **tls(days=10)}),
    )
    assert check_status(machine.root, "docker_registry_certificate") == WARNING
    machine.stop("docker-registry")
    assert check_status(machine.root, "check_http") == CRITICAL
    assert check_status(machine.root, "docker_registry_certificate") == CRITICAL


@pytest.mark.parametrize("front", [False, True], ids=["registry", "haproxy"])
def test_mutual_tls_is_checked_without_a_client_certificate(ctx, machine, port, front):
    """The TLS server is the registry, or haproxy when mirrors are served."""
    config = {**tls(), "tls-client-auth": "on"}
    if front:
        # haproxy is the TLS server then; the cache behind it need not run (no upstream).
        config["cache-mirrors"] = "upstream.test: http://127.0.0.1:9"
    state = ctx.run(ctx.on.install(), nrpe_unit(machine, port, config))
    assert state.unit_status.name == "active"
    assert check_status(machine.root, "check_http") == OK
    assert check_status(machine.root, "docker_registry_certificate") == OK
    machine.stop("haproxy" if front else "docker-registry")
    assert check_status(machine.root, "check_http") == CRITICAL


def test_each_mirror_is_checked_through_the_front(ctx, machine, port):
    with RegistryProcess() as upstream:
        config = {"cache-mirrors": f"upstream.test: http://127.0.0.1:{upstream.port}"}
        state = ctx.run(ctx.on.install(), nrpe_unit(machine, port, config))
        assert state.unit_status.name == "active"
        name = "docker_registry_mirror_upstream.test"
        assert check_status(machine.root, "check_http") == OK
        assert check_status(machine.root, name) == OK
        machine.stop("docker-registry-mirror@upstream.test")
        assert check_status(machine.root, name) == CRITICAL
        assert check_status(machine.root, "check_http") == OK
