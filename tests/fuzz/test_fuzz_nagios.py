"""The established layers' options and the nrpe unit's names, fuzzed (no processes).

Asserted: a value is refused naming its option, or every file written from it
keeps its shape: each Nagios service definition has exactly its six
directives with one-word values, each NRPE file one `command[...]` line, and
the apt sources list one `deb` line per source, each key in the charm's
keyring files only.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from fuzz.budget import COUNTS, budget
from fuzz.strategies import hostile_text, option_values, pieces
from state.config import CharmConfig, InvalidConfigError
from state.nagios import nagios_files, nagios_site, registry_checks
from state.packages import KEY_PREFIX, KEYRING_DIR, plan_packages
from support import plans

OPTIONS = [
    "nagios_context",
    "nagios_servicegroups",
    "extra_packages",
    "package_status",
    "install_sources",
    "install_keys",
]
KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGRz\n-----END PGP PUBLIC KEY BLOCK-----\n"
SERVICE_KEYS = ["use", "host_name", "service_description", "check_command", "servicegroups"]
GOOD_LINES = [
    "deb http://m/u jammy main",
    "deb [arch=amd64] http://m/u jammy main universe",
    "deb-src file:/srv/repo ./",
]
source_lines = st.one_of(
    st.sampled_from(GOOD_LINES),
    st.sampled_from(GOOD_LINES),
    st.tuples(st.sampled_from(GOOD_LINES), hostile_text, st.booleans()).map(
        lambda t: t[0] + t[1] if t[2] else t[1] + t[0]
    ),
    pieces("deb ", "http://m/u ", "jammy ", "main", "[signed-by=/x] "),
)
keys = st.one_of(st.just(KEY), st.none(), hostile_text)
values = {name: option_values(name) for name in OPTIONS}
values["package_status"] = st.one_of(st.sampled_from(["install", "hold"]), hostile_text)
values["extra_packages"] = st.one_of(st.sampled_from(["", "htop", "jq htop"]), hostile_text)
values["install_sources"] = st.one_of(
    values["install_sources"], st.lists(source_lines, max_size=3).map(yaml.safe_dump)
)
values["install_keys"] = st.one_of(
    values["install_keys"], st.lists(keys, max_size=3).map(yaml.safe_dump)
)
NAGIOS_OPTIONS, APT_OPTIONS = OPTIONS[:2], OPTIONS[2:]


def changes(names: list[str]) -> st.SearchStrategy[dict]:
    return st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({name: values[name] for name in chosen})
    )


remote = st.one_of(st.none(), hostile_text, st.sampled_from(["site", "juju-node-1.maas"]))


def check_service(text: str) -> None:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert (lines[0], lines[-1]) == ("define service {", "}"), text
    directives = [line.split(None, 1) for line in lines[1:-1]]
    assert [key for key, _ in directives] == SERVICE_KEYS, text
    for key, value in directives:
        assert key == "service_description" or len(value.split()) == 1, (key, value)


def check_refusal(error: InvalidConfigError) -> None:
    """A refusal names the options at fault, and only these."""
    assert set(error.options) <= set(OPTIONS), error.options


def accepted(options: dict, family: str) -> CharmConfig | None:
    """The config, or None when refused (naming only the options given)."""
    try:
        config = CharmConfig(**options)
    except InvalidConfigError as e:
        COUNTS[family]["refused"] += 1
        check_refusal(e)
        return None
    COUNTS[family]["accepted"] += 1
    return config


@budget(2000)
@given(changes(NAGIOS_OPTIONS), remote, remote)
def test_nagios_names_keep_every_file_in_shape(options, context, hostname):
    config = accepted(options, "nagios_* options and the nrpe unit's names")
    if config is None:
        return
    site = nagios_site(
        config.nagios_context,
        config.nagios_servicegroups,
        remote_context=context,
        remote_hostname=hostname,
    )
    checks = registry_checks(plans.plan(config))
    for path, text in nagios_files(checks, site, unit_name="d/0", root=Path("/")).items():
        if path.parent == Path("/var/lib/nagios/export"):
            check_service(text)
        else:
            commands = [line for line in text.splitlines() if line.startswith("command[")]
            assert (len(commands), text.count("\n")) == (1, 5), text


@budget(2000)
@given(changes(APT_OPTIONS))
def test_apt_options_write_one_deb_line_per_source(options):
    config = accepted(options, "layer:apt options")
    if config is None:
        return
    packages = plan_packages(
        config.apt_sources, config.extra_package_names, hold=False, root=Path("/")
    )
    if packages.sources_list is not None:
        COUNTS["layer:apt options"]["accepted with apt sources"] += 1
        lines = packages.sources_list.splitlines()
        assert len(lines) == 1 + len(config.apt_sources)
        assert all(line.startswith(("deb ", "deb-src ")) for line in lines[1:]), lines
    for path in packages.keys:
        assert path.parent == Path(KEYRING_DIR), path
        assert path.name.startswith(KEY_PREFIX), path
    for name in config.extra_package_names:
        assert name.isprintable(), name
        assert " " not in name, name
        assert not name.startswith("-"), name
