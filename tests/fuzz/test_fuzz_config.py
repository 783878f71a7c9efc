"""Config options fuzzed: in the pure state, then a sample against a real registry.

Asserted for every example: no exception but the charm's own refusals;
an accepted value renders files each format reads back as given (no
injected directive or line); a refused value names an option. Against the
real registry: a refused value blocks with every file byte-identical and no
restart; an accepted one leaves the registry answering `/v2/`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml
from hypothesis import given

from fuzz.budget import COUNTS, budget
from fuzz.strategies import CONFIG_OPTIONS, config_changes
from state.config import CharmConfig, InvalidConfigError
from state.plan import PlanError, RegistryPlan
from support import plans
from support.files import snapshot

DROPIN_DIRECTIVES = {
    "[Service]",
    "Restart=on-failure",
    "RestartSec=5s",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=90s",
    'Environment="GOGC=400"',
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "UMask=0007",
    "EnvironmentFile=/etc/docker/registry/environment",
}
ENVIRONMENT_LINE = re.compile(r'(HTTP_PROXY|HTTPS_PROXY|NO_PROXY)="([^"\\`$\n]|\\.)*"')
HAPROXY_KEYWORDS = (
    "global", "log", "maxconn", "user", "group", "defaults", "mode", "option", "timeout",
    "frontend", "bind", "acl", "use_backend", "default_backend", "backend", "server",
    "http-request", "http-response", "tune.bufsize", "lua-load", "tune.lua.session-timeout",
    "retries",
)  # fmt: skip
SECRET_OPTIONS = ("auth-basic-password", "cache-password", "storage-s3-secretkey")


def options_named(problems: list[tuple[str, str]]) -> set[str]:
    return {name.strip() for options, _ in problems for name in options.split(",")}


def check_refusal(error: InvalidConfigError, changes: dict) -> None:
    """A refusal names real options (or a group of them) and echoes no secret."""
    for name in options_named(error.problems):
        assert name in CONFIG_OPTIONS or name.endswith("*"), name
    for option in SECRET_OPTIONS:
        secret = changes.get(option)
        if isinstance(secret, str) and len(secret) >= 6 and not secret.isspace():
            assert secret not in str(error)


def check_rendered(plan: RegistryPlan, config: CharmConfig) -> None:
    """Every file reads back as the values given: no value escaped its quotes."""
    assert plan.config_yaml.isascii()
    registry = yaml.safe_load(plan.config_yaml)
    assert registry["log"]["fields"]["service"] == config.registry_name
    assert registry["http"].get("host") == (config.http_host or None)
    if config.basic_auth:
        assert set(registry["auth"]) == {"htpasswd"}
    lines = [line for line in plan.dropin.splitlines() if line and not line.startswith("#")]
    assert set(lines) <= DROPIN_DIRECTIVES
    if plan.environment is not None:
        for line in plan.environment.splitlines()[1:]:
            assert ENVIRONMENT_LINE.fullmatch(line), line
    if plan.front is not None:
        for line in plan.front.haproxy_config.splitlines():
            word = line.split(maxsplit=1)[0] if line.strip() else ""
            assert not word or word.startswith("#") or word in HAPROXY_KEYWORDS, line
        for mirror in plan.front.mirrors:
            assert yaml.safe_load(mirror.config_yaml)["proxy"]["remoteurl"] == mirror.upstream_url


@budget(6000)
@given(config_changes())
def test_config_without_processes(changes):
    family = COUNTS["config, no processes"]
    try:
        config = CharmConfig(**{name.replace("-", "_"): v for name, v in changes.items()})
    except InvalidConfigError as e:
        family["refused"] += 1
        check_refusal(e, changes)
        return
    try:
        desired = plans.plan(config, root=Path("/"), address="127.0.0.1")
    except PlanError:
        family["refused by the plan"] += 1
        return
    family["accepted"] += 1
    check_rendered(desired, config)


# --- a sample against the real registry ----------------------------------------

REAL_OPTIONS = [
    "registry-name",
    "http-host",
    "log-level",
    "auth-basic-user",
    "auth-basic-password",
    "storage-delete",
    "storage-cache",
    "storage-read-only",
    "storage-redirect-disable",
    "registry-http-proxy",
    "registry-https-proxy",
    "tls-cert-blob",
    "tls-key-blob",
    "tls-ca-blob",
    "tls-cert-path",
    "tls-key-path",
    "tls-ca-path",
    "prometheus-metrics",
    "registry-image",
]
"""Every option that reaches the registry without an outside service: object storage
and pull-through caches need their remote end (a cache exits when it cannot reach its
upstream, see the README)."""


@budget(200)
@given(config_changes(REAL_OPTIONS, max_size=3))
def test_config_against_the_real_registry(unit, changes):
    family = COUNTS["config, real registry"]
    machine = unit.machine
    before, launches = snapshot(machine.root), sum(machine.launches.values())
    state = dataclasses.replace(unit.state, config={**unit.base, **changes})
    state = unit.ctx.run(unit.ctx.on.config_changed(), state)
    status = state.unit_status
    assert unit.foreign.read_bytes() == b"the system's CA bundle"
    if status.name == "blocked":
        family["refused"] += 1
        assert "Registry is not answering" not in status.message, changes
        assert any(f"{option}:" in status.message for option in CONFIG_OPTIONS), status.message
        assert snapshot(machine.root) == before
        assert sum(machine.launches.values()) == launches
    else:
        family["accepted, answering"] += 1
        if sum(machine.launches.values()) > launches:
            COUNTS["config, real registry: restarts for accepted values"]["restarts"] += 1
        assert status.name == "active", status
        unit.state = state
    assert machine.running("docker-registry")
