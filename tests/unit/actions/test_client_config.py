"""client-config: namespaced mirrors of several hosts, logins, the containerd charm's lists."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from ops import testing

from charm_context import unit_state
from support import pki

CA = pki.make_ca()
CERT, KEY = pki.issue(CA, "registry", ["127.0.0.1", "registry.test"])
PASSWORD = "s3cret'\"pw"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


TLS = {"tls-cert-blob": b64(CERT), "tls-key-blob": b64(KEY), "tls-ca-blob": b64(CA.cert_pem)}
AUTH = {"auth-basic-user": "alice", "auth-basic-password": PASSWORD}


def client_config(ctx, state: testing.State, **params: object) -> dict[str, str]:
    ctx.run(ctx.on.action("client-config", params=params), state)
    assert ctx.action_results is not None
    return ctx.action_results


def test_namespaced_mirror_of_several_hosts(ctx, port):
    netloc = f"127.0.0.1:{port}"
    results = client_config(
        ctx,
        unit_state(port, config={**TLS, **AUTH}),
        **{
            "mirror-of": "gcr.io, somehost.io\notherhost.io gcr.io",
            "namespace": "test-namespace/",
        },
    )
    files = json.loads(results["files"])
    assert sorted(files) == sorted(
        f"{host}/{name}"
        for host in (netloc, "gcr.io", "somehost.io", "otherhost.io")
        for name in ("hosts.toml", "ca.crt")
    )
    assert files["somehost.io/ca.crt"] == CA.cert_pem.decode()
    assert results["hosts-toml"] == files["gcr.io/hosts.toml"], "the first mirror-of host"
    assert files["gcr.io/hosts.toml"].splitlines()[3:] == [
        'server = "https://gcr.io"',
        "",
        f'[host."https://{netloc}/v2/test-namespace"]',
        '  capabilities = ["pull", "resolve"]',
        '  ca = "/etc/containerd/certs.d/gcr.io/ca.crt"',
        "  override_path = true",
    ]
    mirrors = [
        {"host": host, "url": f"https://{netloc}/v2/test-namespace"}
        for host in ("gcr.io", "somehost.io", "otherhost.io")
    ]
    assert json.loads(results["custom-registries"]) == mirrors
    own = {"host": netloc, "url": netloc, "username": "alice", "ca_file": b64(CA.cert_pem)}
    assert json.loads(results["custom-registries-unrelated"]) == [own, *mirrors]
    assert PASSWORD not in json.dumps(results)


def test_namespace_takes_a_mirrored_upstream_only_when_asked(ctx, port):
    netloc = f"127.0.0.1:{port}"
    mirrors = "docker.io: https://registry-1.docker.io\nghcr.io: https://ghcr.io\n"
    state = unit_state(port, config={"cache-mirrors": mirrors})
    results = client_config(ctx, state, **{"mirror-of": "ghcr.io", "namespace": "air"})
    assert json.loads(results["custom-registries"]) == [
        {"host": "docker.io", "url": f"http://{netloc}/v2/docker.io"},
        {"host": "ghcr.io", "url": f"http://{netloc}/v2/air"},
    ]
    assert 'server = "https://ghcr.io"' in results["hosts-toml"]


def test_plain_http_with_basic_auth_keeps_the_password_out(ctx, port):
    netloc = f"127.0.0.1:{port}"
    results = client_config(ctx, unit_state(port, config=AUTH), **{"mirror-of": "docker.io"})
    assert PASSWORD not in json.dumps(results)
    assert json.loads(results["docker-daemon-json"]) == {
        "insecure-registries": [netloc],
        "registry-mirrors": [f"http://{netloc}"],
    }
    assert json.loads(results["docker-config-json"]) == {"auths": {netloc: {"username": "alice"}}}
    assert json.loads(results["custom-registries-unrelated"]) == [
        {"host": netloc, "url": f"http://{netloc}"},
        # The login must sit under configs."<netloc>", so its url is the bare netloc;
        # an empty host makes the containerd charm write no mirror for it.
        {"host": "", "url": netloc, "username": "alice"},
        {"host": "docker.io", "url": f"http://{netloc}"},
    ]
    assert results["containerd-auth-toml"].splitlines()[3:] == [
        f'[plugins."io.containerd.grpc.v1.cri".registry.configs."{netloc}".auth]',
        '  username = "alice"',
        '  # password = "<auth-basic-password>"  (client-config include-password=true prints it)',
    ]


def test_include_password_puts_it_where_a_login_goes(ctx, port):
    netloc = f"127.0.0.1:{port}"
    state = unit_state(port, config={**AUTH, **TLS})
    results = client_config(ctx, state, **{"include-password": True})
    auth = json.loads(results["docker-config-json"])["auths"][netloc]["auth"]
    assert base64.b64decode(auth).decode() == f"alice:{PASSWORD}"
    assert json.loads(results["custom-registries-unrelated"])[0]["password"] == PASSWORD
    assert json.loads(results["custom-registries"]) == [], "the relation carries the login"
    assert 'password = "s3cret\'\\"pw"' in results["containerd-auth-toml"]
    assert "docker-daemon-json" not in results


def test_toml_reads_back_whatever_the_values(ctx, port):
    """TOML takes no surrogate pairs (JSON's escapes for an emoji): every value reads back."""
    tomllib = pytest.importorskip("tomllib")
    password = 'pa\U0001f680ss\\"\u2028'
    state = unit_state(port, config={**TLS, "auth-basic-password": password})
    hosts_dir = "/srv/cert\u00e9s.d \U0001f680"
    results = client_config(ctx, state, **{"include-password": True, "hosts-dir": hosts_dir})
    auth = tomllib.loads(results["containerd-auth-toml"])
    configs = auth["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]
    assert configs[f"127.0.0.1:{port}"]["auth"]["password"] == password
    hosts = tomllib.loads(results["hosts-toml"])
    assert hosts["host"][f"https://127.0.0.1:{port}"]["ca"] == (
        f"{hosts_dir}/127.0.0.1:{port}/ca.crt"
    )


def test_no_login_results_without_basic_auth(ctx, port):
    results = client_config(ctx, unit_state(port, config=TLS))
    assert "docker-config-json" not in results
    assert "containerd-auth-toml" not in results


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"mirror-of": "gcr.io,Bad_Host"},
            "mirror-of: 'Bad_Host' is not a registry host such as docker.io or gcr.io",
        ),
        (
            {"mirror-of": "gcr.io", "namespace": "Team A"},
            "namespace: 'Team A' is not a repository path"
            " (lowercase letters, digits, . _ - and /)",
        ),
        ({"namespace": "air"}, "namespace: name the hosts it mirrors in mirror-of, e.g. gcr.io"),
        (
            {"hosts-dir": "/etc/containerd/certs.d\n[host.evil]"},
            "hosts-dir must be an absolute path of printable characters, not"
            " '/etc/containerd/certs.d\\n[host.evil]'",
        ),
    ],
)
def test_bad_params_fail_naming_the_param(ctx, port, params, message):
    with pytest.raises(testing.ActionFailed) as failed:
        client_config(ctx, unit_state(port), **params)
    assert failed.value.message == message


# registries.yaml's fields as k3s and RKE2 document them (docs.k3s.io, "Private Registry
# Configuration"): mirrors with endpoint and rewrite; configs with auth and tls.
K3S_MIRROR_FIELDS = {"endpoint", "rewrite"}
K3S_CONFIG_FIELDS = {"auth", "tls"}
K3S_AUTH_FIELDS = {"username", "password", "auth", "identity_token"}
K3S_TLS_FIELDS = {"cert_file", "key_file", "ca_file", "insecure_skip_verify"}


def check_k3s_fields(registries: dict) -> None:
    assert set(registries) <= {"mirrors", "configs"}
    for mirror in registries["mirrors"].values():
        assert set(mirror) <= K3S_MIRROR_FIELDS
        assert all(isinstance(url, str) for url in mirror["endpoint"])
    for config in registries.get("configs", {}).values():
        assert set(config) <= K3S_CONFIG_FIELDS
        assert set(config.get("auth", {})) <= K3S_AUTH_FIELDS
        assert set(config.get("tls", {})) <= K3S_TLS_FIELDS


def test_k3s_registries_yaml_rewrites_a_namespace_and_carries_login_and_ca(ctx, port):
    netloc = f"127.0.0.1:{port}"
    state = unit_state(port, config={**TLS, **AUTH})
    params = {"mirror-of": "gcr.io somehost.io", "namespace": "test-namespace"}
    results = client_config(ctx, state, **params)
    registries = yaml.safe_load(results["registries-yaml"])
    check_k3s_fields(registries)
    namespaced = {"endpoint": [f"https://{netloc}"], "rewrite": {"^(.*)$": "test-namespace/$1"}}
    assert registries["mirrors"] == {
        netloc: {"endpoint": [f"https://{netloc}"]},
        "gcr.io": namespaced,
        "somehost.io": namespaced,
    }
    ca_file = f"/etc/rancher/docker-registry/{netloc}/ca.crt"
    assert registries["configs"] == {
        netloc: {"auth": {"username": "alice"}, "tls": {"ca_file": ca_file}}
    }
    assert results["ca-crt"] == CA.cert_pem.decode()
    assert PASSWORD not in json.dumps(results)

    results = client_config(ctx, state, **params, **{"include-password": True})
    registries = yaml.safe_load(results["registries-yaml"])
    assert registries["configs"][netloc]["auth"] == {"username": "alice", "password": PASSWORD}


def test_registries_conf_mirrors_each_host_at_the_namespace(ctx, port):
    tomllib = pytest.importorskip("tomllib")
    netloc = f"127.0.0.1:{port}"
    mirrors = "ghcr.io: https://ghcr.io\n"
    state = unit_state(port, config={"cache-mirrors": mirrors, **AUTH})
    results = client_config(ctx, state, **{"mirror-of": "gcr.io, docker.io", "namespace": "air"})
    conf = tomllib.loads(results["registries-conf"])
    mirror = {"location": f"{netloc}/air", "insecure": True}
    assert conf["registry"] == [
        {"prefix": netloc, "location": netloc, "insecure": True},
        {
            "prefix": "ghcr.io",
            "location": "ghcr.io",
            "mirror": [{**mirror, "location": f"{netloc}/ghcr.io"}],
        },
        {"prefix": "gcr.io", "location": "gcr.io", "mirror": [mirror]},
        {"prefix": "docker.io", "location": "docker.io", "mirror": [mirror]},
    ]
    assert results["containers-auth-json"] == results["docker-config-json"]
    daemon = json.loads(results["docker-daemon-json"])
    assert daemon == {"insecure-registries": [netloc]}, "Docker takes no namespaced mirror"


def test_docker_daemon_json_names_a_root_mirror_of_docker_io(ctx, port):
    netloc = f"127.0.0.1:{port}"
    results = client_config(ctx, unit_state(port, config=TLS), **{"mirror-of": "docker.io"})
    assert json.loads(results["docker-daemon-json"]) == {"registry-mirrors": [f"https://{netloc}"]}
    results = client_config(ctx, unit_state(port, config=TLS), **{"mirror-of": "gcr.io"})
    assert "docker-daemon-json" not in results
