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
    *plans.DROPIN_DIRECTIVES,
    "UMask=0007",
    "EnvironmentFile=/etc/docker/registry/environment",
}
ENVIRONMENT_LINE = re.compile(r'(HTTP_PROXY|HTTPS_PROXY|NO_PROXY)="([^"\\`$\n]|\\.)*"')
HAPROXY_KEYWORDS = (
    "global", "log", "maxconn", "user", "group", "defaults", "mode", "option", "timeout",
    "frontend", "bind", "acl", "use_backend", "default_backend", "backend", "server",
    "http-request", "http-response", "tune.bufsize", "lua-load", "tune.lua.session-timeout",
    "retries", "userlist", "http-after-response",
)  # fmt: skip
SECRET_OPTIONS = ("auth-basic-password", "cache-password", "storage-s3-secretkey")


def options_named(problems: list[tuple[str, str]]) -> set[str]:
    return {name.strip() for options, _ in problems for name in options.split(",")}


def refusal(changes: dict) -> str:
    """The refusal's message for `changes` ("" when they are accepted)."""
    try:
        CharmConfig(**{name.replace("-", "_"): v for name, v in changes.items()})
    except InvalidConfigError as e:
        return str(e)
    return ""


def look_alike(value: str) -> str:
    """Another value of the same length and kinds of character (a → b, 9 → 0)."""
    return "".join(
        chr((ord(c) - base + 1) % size + base) if c.isascii() and c.isalnum() else c
        for c in value
        for base, size in [(48, 10) if c.isdigit() else (97 if c.islower() else 65, 26)]
    )


def check_refusal(error: InvalidConfigError, changes: dict) -> None:
    """A refusal names real options (or a group of them) and echoes no secret.

    A secret may occur in the message's fixed words ('regist' in 'registry'):
    it is echoed when the message changes with it.
    """
    for name in options_named(error.problems):
        assert name in CONFIG_OPTIONS or name.endswith("*"), name
    for option in SECRET_OPTIONS:
        secret = changes.get(option)
        if (
            isinstance(secret, str)
            and len(secret) >= 6
            and not secret.isspace()
            and secret in str(error)
        ):
            assert refusal({**changes, option: look_alike(secret)}) == str(error), option


def check_rendered(plan: RegistryPlan, config: CharmConfig) -> None:
    """Every file reads back as the values given: no value escaped its quotes."""
    assert plan.config_yaml.isascii()
    registry = yaml.safe_load(plan.config_yaml)
    assert registry["log"]["fields"]["service"] == config.registry_name
    # Relative Location headers: http-host is what clients are told, never rendered.
    assert "host" not in registry["http"]
    if plan.htpasswd_auth:
        assert set(registry["auth"]) == {"htpasswd"}
    elif plan.front is not None:
        assert "auth" not in registry or "token" in registry["auth"]
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
upstream, see docs/how-to/mirrors.md)."""


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
