"""cache-mirrors: validation, the rendered front, what restarts, and client-config."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops import testing

from charm_context import unit_state, with_config
from state.config import CharmConfig
from state.plan import RegistryPlan
from support import pki, plans
from support.registry import RegistryProcess

MIRRORS = "docker.io: https://registry-1.docker.io\nregistry.k8s.io: https://registry.k8s.io\n"
CREDENTIALS = "ghcr.io: {url: https://ghcr.io, username: bot, password: hunter2}"

INVALID = [
    ("docker.io: [", "cache-mirrors: not valid YAML (line 1)"),
    ("- docker.io", "cache-mirrors: must map upstream hosts to their URLs"),
    ("just-a-string", "cache-mirrors: must map upstream hosts to their URLs"),
    ("Docker.IO: https://r", "cache-mirrors: 'Docker.IO' is not a registry host"),
    ("host:99999: https://r", "cache-mirrors: 'host:99999' is not a registry host"),
    ("docker.io: registry-1.docker.io", "cache-mirrors: docker.io: url must be an absolute"),
    ("docker.io: {username: u}", "cache-mirrors: docker.io: url must be an absolute"),
    ("docker.io: [https://r]", "cache-mirrors: docker.io: give a URL or a mapping"),
    ("docker.io: {url: https://r, user: u}", "docker.io: unknown keys user (expected url,"),
    ("docker.io: {url: https://r, username: 7}", "docker.io: url, username and password must"),
    ("docker.io: https://u:hunter2@r", "docker.io: url must not hold credentials"),
    ("docker.io: {url: https://r, username: u}", "docker.io: set username and password both"),
]


@pytest.mark.parametrize(("value", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_mirrors_block_and_write_nothing(ctx, machine, port, value, message):
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config={"cache-mirrors": value}))
    assert state.unit_status.name == "blocked"
    assert state.unit_status.message.startswith("Invalid charm config: ")
    assert message in state.unit_status.message
    assert "hunter2" not in state.unit_status.message
    assert not (machine.root / "etc").exists()


def test_every_bad_mirror_is_named():
    value = (
        "docker.io: nope\nghcr.io: {url: https://ghcr.io, password: p}\nquay.io: https://quay.io"
    )
    with pytest.raises(ValueError, match=r"docker\.io: url") as error:
        CharmConfig(cache_mirrors=value)
    assert "ghcr.io: set username and password" in str(error.value)
    assert "quay.io" not in str(error.value)


def plan(**options: Any) -> RegistryPlan:
    return plans.plan(root=Path("/"), **options)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CA = pki.make_ca()
CERT, KEY = pki.issue(CA, "registry", ["10.0.0.1", "127.0.0.1"])
TLS = {"tls_cert_blob": b64(CERT), "tls_key_blob": b64(KEY), "tls_ca_blob": b64(CA.cert_pem)}


def test_no_mirrors_no_front():
    assert plan().front is None
    assert yaml.safe_load(plan().config_yaml)["http"]["addr"] == ":5000"


def test_each_mirror_gets_a_cache_and_a_route_and_the_front_takes_the_port():
    layout = plan(
        cache_mirrors=MIRRORS + CREDENTIALS,
        prometheus_metrics=True,
        auth_basic_password="pw",
        **TLS,
    )
    front = layout.front
    assert front is not None
    assert front.hosts == ("docker.io", "ghcr.io", "registry.k8s.io")
    main = yaml.safe_load(layout.config_yaml)
    assert main["http"]["net"] == "unix"
    assert main["http"]["addr"] == "/run/docker-registry/registry.sock"
    assert "tls" not in main["http"], "haproxy terminates TLS"
    assert main["http"]["debug"]["addr"] == "127.0.0.1:5002", "debug server on loopback"
    ghcr = next(m for m in front.mirrors if m.host == "ghcr.io")
    assert ghcr.service == "docker-registry-mirror@ghcr.io"
    assert ghcr.config_path == Path("/etc/docker/registry/mirrors/ghcr.io.yml")
    cache = yaml.safe_load(ghcr.config_yaml)
    assert cache["proxy"] == {
        "remoteurl": "https://ghcr.io",
        "username": "bot",
        "password": "hunter2",
    }
    assert cache["http"]["addr"] == str(ghcr.socket)
    assert "debug" not in cache["http"], "one debug port: the main registry's"
    assert cache["storage"]["filesystem"] == {"rootdirectory": "/srv/registry/mirrors/ghcr.io"}
    # Behind the front only haproxy may connect: it checks credentials and rights.
    assert "auth" not in cache
    assert "auth" not in main
    assert layout.htpasswd_auth is None
    haproxy = front.haproxy_config
    assert "frontend debug_metrics\n    bind ':5001'\n" in haproxy
    assert "server registry_debug '127.0.0.1:5002'" in haproxy
    assert f"bind :5000 ssl crt '{front.pem_path}'" in haproxy
    assert f"acl {ghcr.backend} path_beg '/v2/ghcr.io/'" in haproxy
    assert r"replace-path '^/v2/ghcr\.io/?(.*)$' '/v2/\1'" in haproxy
    assert "user haproxy" in haproxy
    assert "tune.bufsize 65536" in haproxy
    assert "    user 'admin' password '$2b$05$hash-of-admin'" in haproxy
    assert "http-request auth realm 'docker-registry'" in haproxy
    # Requests wait while a registry restarts (its socket is gone for a moment).
    assert f"lua-load '{front.lua_path}'" in haproxy
    assert f"http-request lua.await_socket '{ghcr.socket}'\n" in haproxy
    assert f"http-request lua.await_socket '{front.registry_socket}'\n" in haproxy
    assert 'core.register_action("await_socket"' in front.lua
    assert "hunter2" not in haproxy
    assert front.pem is not None
    assert "PRIVATE KEY" in front.pem
    assert "UMask=0007" in layout.dropin


def test_mirrors_on_object_storage_get_a_prefix_each():
    layout = plan(
        cache_mirrors=MIRRORS,
        storage_s3_region="r",
        storage_s3_bucket="b",
        storage_s3_rootdirectory="/reg",
    )
    assert layout.front is not None
    cache = yaml.safe_load(layout.front.mirrors[0].config_yaml)
    assert cache["storage"]["s3"]["rootdirectory"] == "/reg/mirrors/docker.io"
    assert cache["storage"]["s3"]["bucket"] == "b"


@pytest.fixture(scope="module")
def upstream() -> Iterator[RegistryProcess]:
    """Distribution 2.8 exits at start when it cannot reach its upstream: give it one."""
    with RegistryProcess() as registry:
        yield registry


def local_mirrors(upstream: RegistryProcess, *hosts: str) -> str:
    return yaml.safe_dump(dict.fromkeys(hosts, upstream.url))


def test_mirrors_start_once_and_only_what_changed_restarts(ctx, machine, port, upstream):
    mirrors = local_mirrors(upstream, "docker.io", "registry.k8s.io")
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config={"cache-mirrors": mirrors}))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    services = [
        "docker-registry",
        "haproxy",
        *(f"docker-registry-mirror@{h}" for h in ("docker.io", "registry.k8s.io")),
    ]
    assert {s: machine.launches[s] for s in services} == dict.fromkeys(services, 1)

    state = ctx.run(ctx.on.config_changed(), state)
    assert {s: machine.launches[s] for s in services} == dict.fromkeys(services, 1)

    more = local_mirrors(upstream, "docker.io", "registry.k8s.io", "quay.io")
    state = ctx.run(ctx.on.config_changed(), with_config(state, cache_mirrors=more))
    assert machine.launches["docker-registry-mirror@quay.io"] == 1
    assert (machine.launches["haproxy"], machine.reloads["haproxy"]) == (1, 1), "a new route"
    assert machine.launches["docker-registry-mirror@docker.io"] == 1
    assert machine.launches["docker-registry"] == 1

    state = ctx.run(ctx.on.config_changed(), with_config(state, cache_mirrors=mirrors))
    assert not machine.running("docker-registry-mirror@quay.io")
    assert not (machine.root / "etc/docker/registry/mirrors/quay.io.yml").exists()

    state = ctx.run(ctx.on.config_changed(), with_config(state, cache_mirrors=""))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    assert not machine.running("haproxy")
    assert not machine.running("docker-registry-mirror@docker.io")
    assert not (machine.root / "etc/systemd/system/docker-registry-mirror@.service").exists()
    assert machine.launches["docker-registry"] == 2, "back on its TCP port"


def test_proxy_settings_reach_the_caches(ctx, machine, port, upstream):
    mirrors = local_mirrors(upstream, "docker.io")
    config = {"cache-mirrors": mirrors, "registry-https-proxy": "http://proxy.example:3128"}
    ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    env = machine.environment("docker-registry-mirror@docker.io")
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128"
    assert env["NO_PROXY"] == "localhost,127.0.0.1,::1"


def client_config(ctx, state, **params: str) -> dict:
    params = {"mirror-of": "", "hosts-dir": "/etc/containerd/certs.d", **params}
    ctx.run(ctx.on.action("client-config", params=params), state)
    assert ctx.action_results is not None
    return ctx.action_results


def test_client_config_plain_http(ctx, port):
    state = ctx.run(ctx.on.config_changed(), unit_state(port))
    results = client_config(ctx, state, **{"mirror-of": "docker.io"})
    netloc = f"127.0.0.1:{port}"
    assert json.loads(results["docker-daemon-json"]) == {
        "insecure-registries": [netloc],
        "registry-mirrors": [f"http://{netloc}"],
    }
    assert results["hosts-toml"].splitlines()[3:] == [
        'server = "https://registry-1.docker.io"',
        "",
        f'[host."http://{netloc}"]',
        '  capabilities = ["pull", "resolve"]',
    ]
    files = json.loads(results["files"])
    assert sorted(files) == [f"{netloc}/hosts.toml", "docker.io/hosts.toml"]
    assert '"pull", "resolve", "push"' in files[f"{netloc}/hosts.toml"]
    assert json.loads(results["custom-registries"]) == [
        {"host": "docker.io", "url": f"http://{netloc}"},
    ]
    assert json.loads(results["custom-registries-unrelated"]) == [
        {"host": netloc, "url": f"http://{netloc}"},
        {"host": "docker.io", "url": f"http://{netloc}"},
    ]


def test_client_config_with_tls_auth_and_mirrors(ctx, port):
    config = {
        "cache-mirrors": MIRRORS,
        "auth-basic-user": "alice",
        "auth-basic-password": "s3cret",
        "tls-cert-blob": b64(CERT),
        "tls-key-blob": b64(KEY),
        "tls-ca-blob": b64(CA.cert_pem),
    }
    state = unit_state(port, config=config)
    results = client_config(ctx, state, **{"hosts-dir": "/var/snap/microk8s/current/args/certs.d"})
    assert "s3cret" not in json.dumps(results)
    assert "docker-daemon-json" not in results
    files = json.loads(results["files"])
    assert files["docker.io/ca.crt"] == CA.cert_pem.decode()
    toml = files["registry.k8s.io/hosts.toml"]
    assert 'server = "https://registry.k8s.io"' in toml
    assert f'[host."https://127.0.0.1:{port}/v2/registry.k8s.io"]' in toml
    assert 'ca = "/var/snap/microk8s/current/args/certs.d/registry.k8s.io/ca.crt"' in toml
    assert "override_path = true" in toml
    netloc = f"127.0.0.1:{port}"
    mirror_entries = [
        {"host": "docker.io", "url": f"https://{netloc}/v2/docker.io"},
        {"host": "registry.k8s.io", "url": f"https://{netloc}/v2/registry.k8s.io"},
    ]
    assert json.loads(results["custom-registries"]) == mirror_entries
    own = {"host": netloc, "url": netloc, "username": "alice", "ca_file": b64(CA.cert_pem)}
    assert json.loads(results["custom-registries-unrelated"]) == [own, *mirror_entries]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"hosts-dir": "certs.d"},
            "hosts-dir must be an absolute path of printable characters, not 'certs.d'",
        ),
        ({"mirror-of": "https://docker.io"}, "mirror-of: 'https://docker.io' is not a registry"),
    ],
)
def test_client_config_bad_params_fail(ctx, port, params, message):
    with pytest.raises(testing.ActionFailed, match=message):
        client_config(ctx, unit_state(port), **params)


def test_client_config_fails_on_invalid_config(ctx, port):
    state = unit_state(port, config={"cache-mirrors": "- x"})
    with pytest.raises(testing.ActionFailed, match=r"Cannot tell clients .* cache-mirrors"):
        client_config(ctx, state)
