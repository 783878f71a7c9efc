"""The project files: charmcraft accepts them, the established surface is kept, lint is clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from charm_context import ACTIONS, CONFIG, META, PROJECT

# The established charm's options with their types and defaults (None: no default).
ESTABLISHED_OPTIONS: dict[str, tuple[str, object]] = {
    "auth-basic-password": ("string", ""),
    "auth-basic-user": ("string", "admin"),
    "auth-token-issuer": ("string", ""),
    "auth-token-realm": ("string", ""),
    "auth-token-root-certs": ("string", ""),
    "auth-token-service": ("string", ""),
    "cache-password": ("string", ""),
    "cache-remoteurl": ("string", ""),
    "cache-username": ("string", ""),
    "debug-port": ("int", 5001),
    "http-host": ("string", ""),
    "log-level": ("string", "info"),
    "prometheus-metrics": ("boolean", False),
    "registry-image": ("string", "registry:2"),
    "registry-name": ("string", "registry"),
    "registry-port": ("int", 5000),
    "registry-http-proxy": ("string", None),
    "registry-https-proxy": ("string", None),
    "storage-cache": ("string", "inmemory"),
    "storage-delete": ("boolean", False),
    "storage-redirect-disable": ("boolean", True),
    "storage-read-only": ("boolean", False),
    "storage-swift-authurl": ("string", ""),
    "storage-swift-container": ("string", "docker-registry"),
    "storage-swift-password": ("string", ""),
    "storage-swift-region": ("string", ""),
    "storage-swift-tenant": ("string", ""),
    "storage-swift-username": ("string", ""),
    "storage-swift-domain": ("string", ""),
    "tls-ca-blob": ("string", ""),
    "tls-cert-blob": ("string", ""),
    "tls-key-blob": ("string", ""),
    "tls-ca-path": ("string", "/etc/docker/registry/ca.crt"),
    "tls-cert-path": ("string", "/etc/docker/registry/registry.crt"),
    "tls-key-path": ("string", "/etc/docker/registry/registry.key"),
    "storage-s3-accesskey": ("string", None),
    "storage-s3-secretkey": ("string", None),
    "storage-s3-region": ("string", None),
    "storage-s3-regionendpoint": ("string", None),
    "storage-s3-forcepathstyle": ("boolean", False),
    "storage-s3-bucket": ("string", None),
    "storage-s3-encrypt": ("boolean", False),
    "storage-s3-keyid": ("string", None),
    "storage-s3-secure": ("boolean", True),
    "storage-s3-skip-verify": ("boolean", False),
    # Declared true by the established charm but never applied: it always signed
    # v4. The default is false so that a refreshed deployment keeps signing v4.
    "storage-s3-skip-v4-auth": ("boolean", False),
    "storage-s3-chunksize": ("int", 10485760),
    "storage-s3-multipartcopychunksize": ("int", 33554432),
    "storage-s3-multipartcopymaxconcurrency": ("int", 100),
    "storage-s3-multipartcopythresholdsize": ("int", 33554432),
    "storage-s3-rootdirectory": ("string", None),
    "storage-s3-storageclass": ("string", "STANDARD"),
    "storage-s3-useragent": ("string", None),
    "storage-s3-usedualstack": ("boolean", False),
    "storage-s3-accelerate": ("boolean", False),
    "storage-s3-objectacl": ("string", "private"),
    "storage-s3-loglevel": ("string", "off"),
}
ESTABLISHED_ENDPOINTS = {
    "docker-registry": ("provides", "docker-registry"),
    "website": ("provides", "http"),
    "nrpe-external-master": ("provides", "nrpe-external-master"),
    "cert-provider": ("requires", "tls-certificates"),
    "peer": ("peers", "peer-discovery"),
}
ESTABLISHED_ACTIONS = {
    "push": {"image", "pull", "tag"},
    "images": {"options", "repository"},
    "rmi": {"image", "options"},
    "start": {"name"},
    "stop": {"name", "remove"},
}


def run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=PROJECT, capture_output=True, text=True, timeout=timeout, check=False
    )


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_charmcraft_accepts_the_project():
    result = run(tool("charmcraft"), "expand-extensions")
    assert result.returncode == 0, result.stderr
    expanded = yaml.safe_load(result.stdout)
    assert expanded["name"] == "docker-registry"
    assert set(expanded["platforms"]) == {
        f"ubuntu@{release}:{arch}" for release in ("22.04", "24.04") for arch in ("amd64", "arm64")
    }
    assert set(expanded["config"]["options"]) == set(CONFIG["options"])
    assert set(expanded["actions"]) == set(ACTIONS)


@pytest.mark.parametrize("option", sorted(ESTABLISHED_OPTIONS))
def test_every_established_option_keeps_its_name_type_and_default(option):
    kind, default = ESTABLISHED_OPTIONS[option]
    ours = CONFIG["options"][option]
    assert ours["type"] == kind
    assert ours.get("default") == default
    assert ours["description"].strip()


def test_established_endpoints_and_actions_are_kept():
    for endpoint, (role, interface) in ESTABLISHED_ENDPOINTS.items():
        assert META[role][endpoint]["interface"] == interface
    for action, params in ESTABLISHED_ACTIONS.items():
        assert params <= set(ACTIONS[action].get("params", {})), action


def test_the_charm_entry_point_is_executable():
    assert (PROJECT / "src/charm.py").stat().st_mode & 0o111


def test_ruff_lint_and_format():
    check = run(tool("ruff"), "check", ".")
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = run(tool("ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's contracts (pyproject.toml) checked against the packages in `src`."""
    return subprocess.run(
        [tool("lint-imports"), "--config", str(PROJECT / "pyproject.toml"), "--no-cache"],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_imports_run_one_way_with_no_cycle():
    result = lint_imports(PROJECT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        ("state/plan.py", "from workload import registry", "actions and relations use"),
        ("workload/machine.py", "from relations import peer", "actions and relations use"),
        ("relations/peer.py", "from actions import push", "actions and relations use"),
        ("state/mirrors.py", "from state import config", "no import cycle"),
    ],
)
def test_the_import_contracts_catch_a_wrong_import(tmp_path, module, bad_import, contract):
    src = tmp_path / "src"
    shutil.copytree(PROJECT / "src", src)
    target = src / module
    # Inside a function, where an import dodging a cycle would hide.
    target.write_text(target.read_text() + f"\n\ndef _sneaky():\n    {bad_import}\n")
    result = lint_imports(src)
    assert result.returncode != 0
    assert contract in result.stdout
    assert "BROKEN" in result.stdout


def test_pyright_type_checks():
    result = run(tool("pyright"), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_yaml_is_what_the_charm_loads():
    assert yaml.safe_load((PROJECT / "config.yaml").read_text()) == CONFIG


def test_the_contributing_folder_map_names_every_module():
    guide = (PROJECT / "CONTRIBUTING.md").read_text()
    folder_map = guide[guide.index("```text\nsrc/") : guide.index("bench/  ")]
    listed = {
        line.split()[0]
        for line in folder_map.splitlines()
        if line.strip().split(" ")[0].endswith((".py", "/"))
    }
    modules = {p.name for p in (PROJECT / "src").rglob("*.py") if p.name != "__init__.py"}
    folders = {
        f"{p.name}/" for p in (PROJECT / "src").iterdir() if p.is_dir() and p.name[0] != "_"
    }
    assert modules | folders <= listed, sorted((modules | folders) - listed)
