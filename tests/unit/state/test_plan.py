"""The rendered registry configuration for each config path (no processes)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from charm import DockerRegistryCharm
from charm_context import CONFIG, b64
from state.config import CharmConfig, InvalidConfigError
from support import pki
from support.plans import DROPIN_DIRECTIVES, UNIT_ROOT, directives, plan

ROOT = UNIT_ROOT


def rendered(**options: Any) -> dict:
    return yaml.safe_load(plan(**options).config_yaml)


def test_defaults_match_the_established_charm():
    config = rendered()
    assert config["version"] == 0.1
    assert config["http"] == {
        "addr": ":5000",
        "secret": "s3cr3t",
        "relativeurls": True,
        "draintimeout": "60s",
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    assert config["log"] == {
        "level": "info",
        "formatter": "json",
        "fields": {"service": "registry"},
    }
    assert config["storage"] == {
        "filesystem": {"rootdirectory": "/unit-root/srv/registry"},
        "delete": {"enabled": False},
        "maintenance": {
            "uploadpurging": {"enabled": True, "age": "24h", "interval": "1h", "dryrun": False},
            "readonly": {"enabled": False},
        },
        "cache": {"blobdescriptor": "inmemory"},
        "redirect": {"disable": True},
    }
    assert config["health"]["storagedriver"] == {
        "enabled": True,
        "interval": "10s",
        "threshold": 3,
    }
    assert "auth" not in config
    assert "proxy" not in config
    assert "\nTimeoutStopSec=90s\n" in plan().dropin, "longer than the drain"
    assert 'Environment="GOGC=400"' in plan().dropin
    assert plan().ports == (5000,)
    assert plan().scheme == "http"
    assert (plan().netloc, plan().url) == ("10.0.0.1:5000", "http://10.0.0.1:5000")


def test_basic_auth_uses_the_application_as_realm():
    config = rendered(auth_basic_user="alice", auth_basic_password="pw")
    assert config["auth"] == {
        "htpasswd": {"realm": "docker-registry", "path": "/unit-root/etc/docker/registry/htpasswd"}
    }
    assert "pw" not in plan(auth_basic_password="pw").config_yaml


def test_token_auth():
    ca = pki.make_ca("token-signer")
    config = rendered(
        auth_token_realm="https://auth.example.com/token",
        auth_token_service="registry",
        auth_token_issuer="auth.example.com",
        auth_token_root_certs=b64(ca.cert_pem),
    )
    assert config["auth"]["token"] == {
        "realm": "https://auth.example.com/token",
        "service": "registry",
        "issuer": "auth.example.com",
        "rootcertbundle": "/unit-root/etc/docker/registry/token-root-certs.pem",
    }


def test_http_options_and_metrics():
    p = plan(
        http_host="http://registry.example.com:5000",
        registry_port=6000,
        debug_port=6001,
        prometheus_metrics=True,
        log_level="debug",
        registry_name="edge-registry",
        storage_delete=True,
        storage_read_only=True,
        storage_cache="none",
        storage_redirect_disable=False,
    )
    config = yaml.safe_load(p.config_yaml)
    assert config["http"]["addr"] == ":6000"
    assert "host" not in config["http"], "relative URLs: clients and actions stay where they are"
    assert config["http"]["debug"] == {
        "addr": "127.0.0.1:6002",
        "prometheus": {"enabled": True, "path": "/metrics"},
    }
    assert config["log"]["level"] == "debug"
    assert config["log"]["fields"]["service"] == "edge-registry"
    assert config["storage"]["delete"] == {"enabled": True}
    assert config["storage"]["maintenance"]["readonly"] == {"enabled": True}
    assert config["storage"]["redirect"] == {"disable": False}
    assert "cache" not in config["storage"]
    assert p.ports == (6000, 6001)
    assert (p.netloc, p.url) == ("registry.example.com:5000", "http://registry.example.com:5000")


def test_pull_through_cache():
    config = rendered(
        cache_remoteurl="https://registry-1.docker.io",
        cache_username="bob",
        cache_password="hunter2",
    )
    assert config["proxy"] == {
        "remoteurl": "https://registry-1.docker.io",
        "username": "bob",
        "password": "hunter2",
    }
    assert rendered(cache_remoteurl="http://upstream:5000")["proxy"] == {
        "remoteurl": "http://upstream:5000"
    }


def test_s3_storage_applies_every_option():
    config = rendered(
        storage_s3_region="us-east-1",
        storage_s3_bucket="images",
        storage_s3_accesskey="AKIA",
        storage_s3_secretkey="secret",
        storage_s3_regionendpoint="https://rgw.example.com",
        storage_s3_forcepathstyle=True,
        storage_s3_encrypt=True,
        storage_s3_keyid="kms-key",
        storage_s3_secure=False,
        storage_s3_skip_verify=True,
        storage_s3_skip_v4_auth=False,
        storage_s3_chunksize=5242880,
        storage_s3_multipartcopychunksize=1,
        storage_s3_multipartcopymaxconcurrency=2,
        storage_s3_multipartcopythresholdsize=3,
        storage_s3_rootdirectory="/registry",
        storage_s3_storageclass="REDUCED_REDUNDANCY",
        storage_s3_useragent="charm",
        storage_s3_usedualstack=True,
        storage_s3_accelerate=True,
        storage_s3_objectacl="bucket-owner-full-control",
        storage_s3_loglevel="debug",
    )
    assert "filesystem" not in config["storage"]
    assert config["storage"]["s3"] == {
        "region": "us-east-1",
        "bucket": "images",
        "accesskey": "AKIA",
        "secretkey": "secret",
        "regionendpoint": "https://rgw.example.com",
        "forcepathstyle": True,
        "encrypt": True,
        "keyid": "kms-key",
        "secure": False,
        "skipverify": True,
        "v4auth": True,
        "chunksize": 5242880,
        "multipartcopychunksize": 1,
        "multipartcopymaxconcurrency": 2,
        "multipartcopythresholdsize": 3,
        "rootdirectory": "/registry",
        "storageclass": "REDUCED_REDUNDANCY",
        "useragent": "charm",
        "usedualstack": True,
        "accelerate": True,
        "objectacl": "bucket-owner-full-control",
        "loglevel": "debug",
    }
    assert plan(storage_s3_region="r", storage_s3_bucket="b").data_dir is None


@pytest.mark.parametrize(
    ("options", "v4auth"), [({}, True), ({"storage_s3_skip_v4_auth": True}, False)]
)
def test_s3_signs_v4_unless_told_otherwise(options, v4auth):
    """The established charm always signed v4; a unit refreshed with it unset still does."""
    config = rendered(storage_s3_region="r", storage_s3_bucket="b", **options)
    assert config["storage"]["s3"]["v4auth"] is v4auth
    assert CONFIG["options"]["storage-s3-skip-v4-auth"]["default"] is False


def test_swift_storage_wins_over_s3():
    config = rendered(
        storage_swift_authurl="https://keystone.example.com/v3",
        storage_swift_username="swift",
        storage_swift_password="pw",
        storage_swift_region="RegionOne",
        storage_swift_tenant="admin",
        storage_swift_domain="Default",
        storage_s3_region="us-east-1",
        storage_s3_bucket="images",
    )
    assert config["storage"]["swift"] == {
        "authurl": "https://keystone.example.com/v3",
        "username": "swift",
        "password": "pw",
        "container": "docker-registry",
        "region": "RegionOne",
        "tenant": "admin",
        "domain": "Default",
    }
    assert "s3" not in config["storage"]


def test_tls_from_config_blobs():
    ca = pki.make_ca()
    cert, key = pki.issue(ca, "registry", ["10.0.0.1"])
    p = plan(
        tls_cert_blob=b64(cert),
        tls_key_blob=b64(key),
        tls_ca_blob=b64(ca.cert_pem),
        tls_cert_path="/etc/ssl/registry.pem",
    )
    config = yaml.safe_load(p.config_yaml)
    assert config["http"]["tls"] == {
        "certificate": "/unit-root/etc/ssl/registry.pem",
        "key": "/unit-root/etc/docker/registry/registry.key",
    }
    assert p.scheme == "https"
    assert p.url == "https://10.0.0.1:5000"
    assert p.tls is not None
    assert p.tls.ca_pem == ca.cert_pem.decode()


@pytest.mark.parametrize(
    ("options", "environment"),
    [
        ({}, None),
        (
            {"registry_http_proxy": "http://proxy:3128"},
            ['HTTP_PROXY="http://proxy:3128"', 'NO_PROXY="localhost,127.0.0.1,::1"'],
        ),
        (
            {"registry_https_proxy": "http://user:p%40ss@proxy:3128"},
            ['HTTPS_PROXY="http://user:p%40ss@proxy:3128"', 'NO_PROXY="localhost,127.0.0.1,::1"'],
        ),
    ],
)
def test_dropin_restarts_on_failure_and_proxies_go_to_a_file(options, environment):
    p = plan(**options)
    if environment is None:
        assert directives(p.dropin) == list(DROPIN_DIRECTIVES)
        assert p.environment is None
    else:
        assert directives(p.dropin) == [
            *DROPIN_DIRECTIVES,
            "EnvironmentFile=/etc/docker/registry/environment",
        ]
        assert p.environment is not None
        assert directives(p.environment) == environment
        assert p.environment_path == ROOT / "etc/docker/registry/environment"


def test_values_are_quoted_safely():
    config = rendered(registry_name='x: "y"\n#{{x}}')
    assert config["log"]["fields"]["service"] == 'x: "y"\n#{{x}}'


def test_characters_beyond_the_basic_plane_are_escaped_as_the_registry_reads_them():
    # go-yaml refuses the surrogate pairs JSON writes for an emoji, and raw
    # 4-byte UTF-8; it reads \\U escapes.
    p = plan(registry_name="reg\U0001f680istry\x85\u2028", auth_basic_password="pw")
    line = next(line for line in p.config_yaml.splitlines() if "service:" in line)
    assert line.strip() == 'service: "reg\\U0001f680istry\\u0085\\u2028"'
    assert line.isascii()
    assert yaml.safe_load(p.config_yaml)["log"]["fields"]["service"] == (
        "reg\U0001f680istry\x85\u2028"
    )


def tls_options(with_ca: bool = True) -> dict:
    ca = pki.make_ca()
    cert, key = pki.issue(ca, "registry", ["10.0.0.1"])
    options = {"tls_cert_blob": b64(cert), "tls_key_blob": b64(key)}
    return {**options, "tls_ca_blob": b64(ca.cert_pem)} if with_ca else options


def test_client_certificates_are_required_with_the_ca():
    p = plan(client_auth=True, **tls_options())
    tls = yaml.safe_load(p.config_yaml)["http"]["tls"]
    assert tls["clientcas"] == ["/unit-root/etc/docker/registry/client-cas.pem"]
    assert p.client_auth


@pytest.mark.parametrize(("client_auth", "with_ca"), [(False, True), (True, False)])
def test_no_client_certificates_without_client_auth_or_a_ca(client_auth, with_ca):
    p = plan(client_auth=client_auth, **tls_options(with_ca))
    assert "clientcas" not in yaml.safe_load(p.config_yaml)["http"]["tls"]
    assert not p.client_auth


def test_haproxy_verifies_clients_in_front_of_mirrors():
    mirrors = "docker.io: https://registry-1.docker.io"
    p = plan(client_auth=True, cache_mirrors=mirrors, **tls_options())
    assert p.front is not None
    verify = "ca-file '/unit-root/etc/docker/registry/client-cas.pem' verify required"
    assert verify in p.front.haproxy_config


def test_tls_client_auth_takes_on_off_or_empty():
    with pytest.raises(InvalidConfigError, match="tls-client-auth"):
        CharmConfig(tls_client_auth="yes")


def test_clients_get_the_first_proxy_and_actions_take_any():
    """Actions take `<any haproxy unit>:<port>/repo` as this registry's own references."""
    p = plan(proxy_addresses=("10.9.9.2", "10.9.9.10"))
    assert p.netloc == "10.9.9.2:5000"
    assert p.proxied
    netlocs = DockerRegistryCharm._own_netlocs(p)
    assert {"10.9.9.2:5000", "10.9.9.10:5000", "10.0.0.1:5000"} <= set(netlocs)
