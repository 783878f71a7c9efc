"""The options of the established charm's layers (layer:nagios, layer:apt) on a unit."""

from __future__ import annotations

import dataclasses
import urllib.request

import yaml
from ops import testing

from charm_context import CONFIG, unit_state
from state.packages import KEY_PREFIX

KEY = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGRzZXJ2ZXIta2V5\n=abcd\n"
    "-----END PGP PUBLIC KEY BLOCK-----\n"
)
INDENTED_KEY = "".join(f"          {line}\n" for line in KEY.splitlines())
# What a bundle written for the established charm sets, as juju reads it.
BUNDLE = f"""
applications:
  docker-registry:
    charm: docker-registry
    options:
      nagios_context: prod
      nagios_servicegroups: k8s,registry
      extra_packages: haproxy
      package_status: hold
      install_sources: |
        - deb http://mirror.internal/ubuntu jammy main universe
      install_keys: |
        - |
{INDENTED_KEY}"""
JUJU_TYPES = {"string": str, "int": int, "boolean": bool, "float": float}


def bundle_options() -> dict:
    return yaml.safe_load(BUNDLE)["applications"]["docker-registry"]["options"]


def with_options(state: testing.State, **options: object) -> testing.State:
    return dataclasses.replace(state, config={**state.config, **options})


def test_a_bundle_setting_the_six_options_deploys(ctx, machine, port):
    options = bundle_options()
    for name, value in options.items():  # what juju checks before the charm sees them
        assert isinstance(value, JUJU_TYPES[CONFIG["options"][name]["type"]]), name
    state = ctx.run(ctx.on.install(), unit_state(port, config=options))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=10) as response:
        assert response.status == 200
    sources = machine.root / "etc/apt/sources.list.d/docker-registry-charm.list"
    key = machine.root / f"etc/apt/keyrings/{KEY_PREFIX}1.asc"
    assert sources.read_text().splitlines()[1:] == [
        f"deb [signed-by={key}] http://mirror.internal/ubuntu jammy main universe"
    ]
    assert key.read_text() == KEY
    assert (sources.stat().st_mode & 0o777, key.stat().st_mode & 0o777) == (0o644, 0o644)
    assert "haproxy" in machine.installed
    assert machine.held == {"docker-registry", "skopeo", "haproxy"}


def test_holds_are_released_and_sources_removed_leaving_others(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port, config=bundle_options()))
    keyrings = machine.root / "etc/apt/keyrings"
    other = keyrings / "someone-else.asc"
    other.write_text(KEY)
    state = with_options(state, package_status="install", install_sources="", install_keys="")
    state = ctx.run(ctx.on.config_changed(), state)
    assert machine.held == set()
    assert list(keyrings.iterdir()) == [other]
    assert not (machine.root / "etc/apt/sources.list.d/docker-registry-charm.list").exists()


def test_a_package_that_cannot_be_installed_blocks_and_the_registry_serves(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    state = with_options(state, extra_packages="no-such-tool", package_status="hold")
    state = ctx.run(ctx.on.config_changed(), state)
    assert state.unit_status == testing.BlockedStatus(
        "extra_packages: cannot install no-such-tool; see juju debug-log"
    )
    # Not the absent one: apt would refuse to install a held package.
    assert machine.held == {"docker-registry", "skopeo"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=10) as response:
        assert response.status == 200
    installs = len(machine.installed)
    state = ctx.run(ctx.on.update_status(), state)  # not retried at every hook
    assert len(machine.installed) == installs
    assert state.unit_status.name == "blocked"
    state = ctx.run(ctx.on.config_changed(), with_options(state, extra_packages=""))
    assert state.unit_status.name == "active"
