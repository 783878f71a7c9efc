"""layer:apt's options: what is accepted, refused, and the sources list written."""

from __future__ import annotations

from pathlib import Path

import pytest

from state.config import CharmConfig, InvalidConfigError
from state.packages import plan_packages

KEY = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGRzZXJ2ZXIta2V5\n=abcd\n"
    "-----END PGP PUBLIC KEY BLOCK-----\n"
)
MIRROR = "deb http://mirror.internal/ubuntu jammy main universe"


def sources_config(sources: str, keys: str = "") -> CharmConfig:
    return CharmConfig(install_sources=sources, install_keys=keys)


def test_sources_get_their_keys_in_a_keyring_of_their_own():
    keys = "- |\n" + "".join(f"  {line}\n" for line in KEY.splitlines()) + "- null\n"
    sources = f"- {MIRROR}\n- deb [arch=amd64] http://mirror.internal/extra jammy main\n"
    sources += "- deb [signed-by=/usr/share/keyrings/x.gpg] http://other/ubuntu jammy main\n"
    config = sources_config(sources, keys)
    plan = plan_packages(config.apt_sources, (), hold=False, root=Path("/"))
    assert plan.sources_list is not None
    assert plan.sources_list.splitlines()[1:] == [
        "deb [signed-by=/etc/apt/keyrings/docker-registry-charm-1.asc]"
        " http://mirror.internal/ubuntu jammy main universe",
        "deb [arch=amd64] http://mirror.internal/extra jammy main",
        "deb [signed-by=/usr/share/keyrings/x.gpg] http://other/ubuntu jammy main",
    ]
    assert plan.keys == {Path("/etc/apt/keyrings/docker-registry-charm-1.asc"): KEY}


def test_a_single_line_is_a_list_of_one_and_no_sources_writes_no_file():
    one = plan_packages(sources_config(MIRROR).apt_sources, (), hold=False, root=Path("/"))
    assert one.sources_list is not None
    assert one.sources_list.endswith(f"\n{MIRROR}\n")
    none = plan_packages((), (), hold=False, root=Path("/"))
    assert (none.sources_list, none.keys) == (None, {})
    assert one.fingerprint != none.fingerprint


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"extra_packages": "htop ../evil"}, "extra_packages"),
        ({"extra_packages": "htop;reboot"}, "extra_packages"),
        ({"package_status": "purge"}, "package_status"),
        ({"install_sources": "- ppa:someone/tools"}, "install_sources"),
        ({"install_sources": "- cloud:jammy-antelope"}, "install_sources"),
        ({"install_sources": "[unclosed"}, "install_sources"),
        ({"install_sources": "- {a: b}"}, "install_sources"),
        ({"install_sources": f'- "{MIRROR}\\ndeb http://evil/ x main"'}, "install_sources"),
        ({"install_sources": f"- {MIRROR}", "install_keys": "- 0x1234ABCD"}, "install_keys"),
        ({"install_keys": f"- '{KEY}'"}, "install_keys"),
    ],
)
def test_what_cannot_be_applied_is_refused_naming_the_option(options, named):
    with pytest.raises(InvalidConfigError) as error:
        CharmConfig(**options)
    assert error.value.options == [named]
