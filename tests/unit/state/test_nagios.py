"""The Nagios checks and files decided for each registry layout (no processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from charm_context import b64
from state.config import CharmConfig, InvalidConfigError
from state.nagios import NagiosSite, nagios_files, nagios_site, registry_checks
from support import pki
from support.plans import plan

CHECK_HTTP = "/usr/lib/nagios/plugins/check_http"
CA = pki.make_ca("nagios-ca")
MIRRORS = "docker.io: https://registry-1.docker.io\nquay.io:8443: https://quay.io"


def tls_options() -> dict[str, str]:
    cert, key = pki.issue(CA, "registry", ["10.0.0.1"])
    return {"tls_cert_blob": b64(cert), "tls_key_blob": b64(key), "tls_ca_blob": b64(CA.cert_pem)}


def commands(**options: Any) -> dict[str, str]:
    return {check.name: check.command_line for check in registry_checks(plan(**options))}


def test_the_established_check_is_kept_word_for_word():
    assert commands() == {
        "check_http": f"{CHECK_HTTP} -I 127.0.0.1 -p 5000 -e ' 200 OK' -u /",
    }


def test_tls_adds_ssl_and_the_certificate_expiry_check():
    assert commands(registry_port=5443, **tls_options()) == {
        "check_http": f"{CHECK_HTTP} -I 127.0.0.1 -p 5443 -S -e ' 200 OK' -u /",
        "docker_registry_certificate": f"{CHECK_HTTP} -I 127.0.0.1 -p 5443 -S -C 14,7",
    }


def test_each_mirror_is_checked_through_the_front():
    assert commands(cache_mirrors=MIRRORS) == {
        "check_http": f"{CHECK_HTTP} -I 127.0.0.1 -p 5000 -e ' 200 OK' -u /",
        "docker_registry_mirror_docker.io": (
            f"{CHECK_HTTP} -I 127.0.0.1 -p 5000 -e ' 200 OK' -u /v2/docker.io/"
        ),
        "docker_registry_mirror_quay.io_8443": (
            f"{CHECK_HTTP} -I 127.0.0.1 -p 5000 -e ' 200 OK' -u /v2/quay.io:8443/"
        ),
    }


def test_a_mirror_behind_auth_answers_401_and_no_credential_is_written():
    checks = commands(cache_mirrors=MIRRORS, auth_basic_password="hunter2")
    assert checks["docker_registry_mirror_docker.io"].endswith(
        "-e ' 401 Unauthorized' -u /v2/docker.io/"
    )
    assert not any("hunter2" in line for line in checks.values())


def test_mutual_tls_checks_the_handshake_without_a_client_certificate():
    checks = commands(client_auth=True, cache_mirrors=MIRRORS, **tls_options())
    assert checks == {
        "check_http": "/usr/lib/nagios/plugins/check_tcp -H 127.0.0.1 -p 5000 -S",
        "docker_registry_certificate": f"{CHECK_HTTP} -I 127.0.0.1 -p 5000 -S -C 14,7",
    }


def test_files_are_the_established_charms():
    checks = registry_checks(plan())
    files = nagios_files(checks, NagiosSite("juju"), unit_name="docker-registry/0", root=Path("/"))
    header = (
        "\n#---------------------------------------------------\n"
        "# This file is Juju managed\n"
        "#---------------------------------------------------\n"
    )
    assert files == {
        Path("/etc/nagios/nrpe.d/check_check_http.cfg"): (
            f"{header}command[check_http]={CHECK_HTTP} -I 127.0.0.1 -p 5000 -e ' 200 OK' -u /\n"
        ),
        Path("/var/lib/nagios/export/service__docker-registry-0_check_http.cfg"): (
            f"{header}define service {{\n"
            "    use                             active-service\n"
            "    host_name                       juju-docker-registry-0\n"
            "    service_description             Verify docker-registry is responding\n"
            "    check_command                   check_nrpe!check_http\n"
            "    servicegroups                   juju\n"
            "}\n"
        ),
    }


@pytest.mark.parametrize(
    ("remote", "host_name", "groups"),
    [
        ({}, "prod-docker-registry-0", "ops,registry"),
        ({"remote_context": "site"}, "site-docker-registry-0", "ops,registry"),
        ({"remote_hostname": "node-3.maas"}, "node-3.maas", "ops,registry"),
        (
            {"remote_hostname": "evil\n    check_command x"},
            "prod-docker-registry-0",
            "ops,registry",
        ),
    ],
)
def test_the_nrpe_units_names_win_when_they_are_nagios_names(remote, host_name, groups):
    site = nagios_site("prod", " ops, registry,", **remote)
    (service,) = (
        text
        for path, text in nagios_files(
            registry_checks(plan()), site, unit_name="docker-registry/0", root=Path("/")
        ).items()
        if "export" in str(path)
    )
    assert f"    host_name                       {host_name}\n" in service
    assert f"    servicegroups                   {groups}\n" in service
    assert "check_command x" not in service


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"nagios_context": ""}, "nagios_context"),
        ({"nagios_context": "my site"}, "nagios_context"),
        ({"nagios_context": "juju\ndefine host {"}, "nagios_context"),
        ({"nagios_servicegroups": "ops, a'b"}, "nagios_servicegroups"),
    ],
)
def test_names_nagios_would_refuse_or_misread_are_refused(options, named):
    with pytest.raises(InvalidConfigError) as error:
        CharmConfig(**options)
    assert error.value.options == [named]
