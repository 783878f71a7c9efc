"""The `auth-users` secret fuzzed: in the pure state, then a sample through the real haproxy.

Asserted for every example: either a refusal naming `auth-users` and the
user at fault, never echoing a password; or an accepted set whose every user
is one single-quoted word of haproxy.cfg with the rights of its role. Against
the real haproxy: the rendered config passes `haproxy -c`, and each accepted
user gets exactly what its role allows.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import bcrypt
import yaml
from hypothesis import given

from fuzz.budget import COUNTS, budget
from fuzz.strategies import likely_users_secrets, users_secrets
from state.config import CharmConfig, InvalidConfigError
from support import plans

URI = "secret:d0b1rs0co3bs7d2rd5ag"


def load(text: str) -> CharmConfig:
    return CharmConfig(
        auth_basic_password="admin-pw", auth_users=URI, secrets={URI: {"users": text}}
    )


def passwords(text: str) -> list[str]:
    """The passwords the secret holds, for checking none is echoed."""
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    return [
        e["password"]
        for e in data.values()
        if isinstance(e, dict) and isinstance(e.get("password"), str) and len(e["password"]) > 5
    ]


def check_refusal(error: InvalidConfigError, text: str) -> None:
    """Only auth-users is named, each problem names a user or the key; no password echoed."""
    assert {options for options, _ in error.problems} == {"auth-users"}, error.problems
    for _, why in error.problems:
        assert why.startswith(("user ", "the key users")), why
    for password in passwords(text):
        assert password not in str(error), password


@budget(400)
@given(users_secrets)
def test_users_secret_without_processes(text):
    family = COUNTS["auth-users, no processes"]
    try:
        config = load(text)
    except InvalidConfigError as e:
        family["refused"] += 1
        check_refusal(e, text)
        return
    family["accepted"] += 1
    plan = plans.plan(config, root=Path("/"), address="127.0.0.1")
    assert plan.front is not None
    assert plan.access is not None
    haproxy = plan.front.haproxy_config
    for user in config.users:
        assert f"    user '{user.name}' password " in haproxy
        assert "'" not in user.name
        assert not user.name.startswith("juju-")
        if user.role == "push" and user.prefix:
            assert f"path_beg '/v2/{user.prefix}'" in haproxy


@budget(25)
@given(likely_users_secrets)
def test_users_secret_passes_haproxy_check(tmp_path_factory, text):
    family = COUNTS["auth-users, haproxy -c"]
    try:
        config = load(text)
    except InvalidConfigError:
        family["refused"] += 1
        return
    family["accepted"] += 1
    root = tmp_path_factory.mktemp("root")
    plan = plans.plan(config, root=root, address="127.0.0.1")
    assert plan.front is not None
    assert plan.access is not None
    config_text = plan.front.haproxy_config
    for user in plan.access.users:  # real hashes: haproxy checks them with crypt
        real = bcrypt.hashpw(user.password.encode(), bcrypt.gensalt(4)).decode()
        config_text = config_text.replace(f"$2b$05$hash-of-{user.name}'", f"{real}'")
    path = root / "haproxy.cfg"
    path.write_text(config_text)
    (root / "etc/haproxy").mkdir(parents=True, exist_ok=True)
    (root / "etc/haproxy/docker-registry.lua").write_text(plan.front.lua)
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
