"""The systemd units and haproxy.cfg the charm renders, checked by systemd and haproxy.

Hostile proxy values are refused; the values accepted land in a root-only
EnvironmentFile, never in the drop-in, whose directives are exactly ours.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from state.config import CharmConfig, InvalidConfigError
from state.plan import RegistryPlan
from support import plans
from support.plans import DROPIN_DIRECTIVES, directives

PACKAGED_UNIT = Path("/lib/systemd/system/docker-registry.service")


def plan(root: Path, **options: Any) -> RegistryPlan:
    return plans.plan(root=root, address="127.0.0.1", listen_host="127.0.0.1", **options)


INJECTIONS = [
    "http://p:1/\nExecStartPre=+/bin/sh -c 'id > /tmp/owned'",
    "http://p:1/\rExecStartPre=+/bin/sh",
    'http://p:1/"\nExecStartPre=+/bin/sh',
    "http://p:1/$HOME",
    "http://p:1/`id`",
    "http://p:1/\\",
    "http://p:1/ x",
    "http://p:1/\x00",
    "http://p\u2028:1/",
]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("option", ["registry_http_proxy", "registry_https_proxy"])
def test_a_proxy_value_that_could_inject_is_refused(option, value):
    with pytest.raises(InvalidConfigError) as refused:
        CharmConfig(**{option: value})
    assert refused.value.options == [option.replace("_", "-")]


def systemd_verify(unit_dir: Path, unit: str) -> str:
    """`systemd-analyze verify` of `unit` found in `unit_dir`; what it complained of."""
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", unit],
        env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    return "\n".join(line for line in verify.stderr.splitlines() if str(unit_dir) in line)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs Debian's systemd")
@pytest.mark.parametrize(
    "proxy",
    [
        "http://proxy.example:3128",
        "http://us%24er:p%22%0A%25@[fd00::1]:3128/path;x?q=1&r=%2F#frag",
        "https://u:pass@10.0.0.1:8443/",
    ],
)
def test_the_drop_in_systemd_reads_is_exactly_ours(tmp_path, proxy):
    p = plan(tmp_path, registry_http_proxy=proxy, registry_https_proxy=proxy)
    units = tmp_path / "units"
    (units / "docker-registry.service.d").mkdir(parents=True)
    shutil.copy(PACKAGED_UNIT, units)
    (units / "docker-registry.service.d/10-juju.conf").write_text(p.dropin)
    assert systemd_verify(units, str(units / "docker-registry.service")) == ""
    assert directives(p.dropin) == [
        *DROPIN_DIRECTIVES,
        "EnvironmentFile=/etc/docker/registry/environment",
    ]
    assert p.environment is not None
    assert directives(p.environment) == [
        f'HTTPS_PROXY="{proxy}"',
        f'HTTP_PROXY="{proxy}"',
        'NO_PROXY="localhost,127.0.0.1,::1"',
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs Debian's systemd")
def test_the_mirror_unit_and_its_drop_in_verify(tmp_path):
    mirrors = "docker.io: https://registry-1.docker.io\nhost.example:5000: https://h:5000"
    p = plan(tmp_path, cache_mirrors=mirrors, registry_https_proxy="http://proxy:3128")
    assert p.front is not None
    units = tmp_path / "units"
    (units / "docker-registry-mirror@.service.d").mkdir(parents=True)
    (units / "docker-registry-mirror@.service").write_text(p.front.unit)
    (units / "docker-registry-mirror@.service.d/10-juju.conf").write_text(p.dropin)
    # (systemd-analyze 252 cannot verify an instance named with a ':', as
    # host.example:5000; systemctl starts it.)
    assert systemd_verify(units, "docker-registry-mirror@docker.io.service") == ""
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in directives(p.front.unit)
    assert directives(p.dropin) == [
        *DROPIN_DIRECTIVES,
        "UMask=0007",
        "EnvironmentFile=/etc/docker/registry/environment",
    ]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy")
def test_haproxy_takes_the_front_config_with_every_value_quoted(tmp_path):
    # haproxy allows unix socket paths of 97 bytes: a short root.
    root = Path(tempfile.mkdtemp(prefix="$r #", dir="/tmp"))
    mirrors = "docker.io: https://registry-1.docker.io\nhost.example:5000: https://h:5000"
    p = plan(root, cache_mirrors=mirrors)
    assert p.front is not None
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(p.front.haproxy_config)
    p.front.lua_path.parent.mkdir(parents=True)
    p.front.lua_path.write_text(p.front.lua)
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"server registry '{root}/run/docker-registry/registry.sock'" in p.front.haproxy_config
    shutil.rmtree(root)
