"""Every invalid config value blocks the unit, names the option and why, writes nothing."""

from __future__ import annotations

import datetime

import pytest
from ops import testing

from charm_context import b64, unit_state
from support import pki

CA = pki.make_ca()
CERT = pki.issue(CA, "registry", ["127.0.0.1"])
OTHER = pki.issue(CA, "other", ["127.0.0.2"])
EXPIRED = pki.issue(
    CA,
    "old",
    not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
    not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc),
)


INVALID = [
    ({"registry-port": 70000}, "registry-port: 70000 is not a TCP port (1-65535)"),
    ({"debug-port": 0}, "debug-port: 0 is not a TCP port (1-65535)"),
    ({"debug-port": "same"}, "registry-port, debug-port: must differ"),
    ({"log-level": "verbose"}, "log-level: must be one of error, warn, info, debug"),
    ({"storage-cache": "redis"}, "storage-cache: must be one of inmemory, none"),
    ({"http-host": "registry.example.com"}, "http-host: must be an absolute http(s) URL"),
    ({"http-host": "https://h:99999"}, "http-host: must be an absolute http(s) URL"),
    (
        {"registry-http-proxy": "proxy:3128"},
        "registry-http-proxy: must be an absolute http(s) URL",
    ),
    ({"registry-https-proxy": "ftp://p"}, "registry-https-proxy: must be an absolute http(s) URL"),
    (
        {"auth-basic-user": "a:b", "auth-basic-password": "pw"},
        "auth-basic-user: must be non-empty, hold no ':', whitespace",
    ),
    (
        {"auth-token-realm": "https://auth/token", "auth-token-service": "registry"},
        "auth-token-issuer, auth-token-root-certs: token auth needs all four",
    ),
    (
        {
            "auth-token-realm": "https://auth/token",
            "auth-token-service": "s",
            "auth-token-issuer": "i",
            "auth-token-root-certs": "bm90IGEgY2VydA==",
        },
        "auth-token-root-certs: does not hold PEM data",
    ),
    (
        {
            "auth-token-realm": "https://auth/token",
            "auth-token-service": "s",
            "auth-token-issuer": "i",
            "auth-token-root-certs": b64(CA.cert_pem),
            "auth-basic-password": "pw",
        },
        "auth-basic-password, auth-users, auth-anonymous-pull, auth-token-*:"
        " basic and token auth are exclusive",
    ),
    ({"cache-remoteurl": "docker.io"}, "cache-remoteurl: must be an absolute http(s) URL"),
    (
        {"cache-remoteurl": "https://r", "cache-username": "u"},
        "cache-username, cache-password: set both or neither",
    ),
    ({"cache-password": "p", "cache-username": "u"}, "cache-remoteurl: needed by cache-username"),
    ({"storage-s3-bucket": "images"}, "storage-s3-region: needed for S3 storage"),
    (
        {"storage-s3-region": "r", "storage-s3-bucket": "b", "storage-s3-accesskey": "k"},
        "storage-s3-accesskey, storage-s3-secretkey: set both or neither",
    ),
    (
        {"storage-s3-region": "r", "storage-s3-bucket": "b", "storage-s3-chunksize": 1024},
        "storage-s3-chunksize: must be at least 5242880",
    ),
    (
        {"storage-s3-region": "r", "storage-s3-bucket": "b", "storage-s3-loglevel": "trace"},
        "storage-s3-loglevel: must be one of off, debug",
    ),
    (
        {"storage-s3-region": "r", "storage-s3-bucket": "b", "storage-s3-regionendpoint": "rgw"},
        "storage-s3-regionendpoint: must be an absolute http(s) URL",
    ),
    (
        {"storage-swift-authurl": "https://keystone/v3"},
        "storage-swift-username, storage-swift-password: needed for Swift storage",
    ),
    (
        {
            "storage-swift-authurl": "keystone",
            "storage-swift-username": "u",
            "storage-swift-password": "p",
        },
        "storage-swift-authurl: must be an absolute http(s) URL",
    ),
    (
        {"storage-swift-username": "u"},
        "storage-swift-authurl: needed by the other storage-swift-*",
    ),
    ({"tls-cert-blob": b64(CERT.cert_pem)}, "tls-cert-blob, tls-key-blob: set both or neither"),
    ({"tls-ca-blob": b64(CA.cert_pem)}, "tls-cert-blob, tls-key-blob: set both or neither"),
    (
        {"tls-cert-blob": "%%%", "tls-key-blob": b64(CERT.key_pem)},
        "tls-cert-blob: not valid base64-encoded PEM",
    ),
    (
        {"tls-cert-blob": b64("hello"), "tls-key-blob": b64(CERT.key_pem)},
        "tls-cert-blob: does not hold PEM data",
    ),
    (
        {"tls-cert-blob": b64(CERT.cert_pem), "tls-key-blob": b64(CERT.cert_pem)},
        "tls-key-blob: not an unencrypted PEM private key",
    ),
    (
        {"tls-cert-blob": b64(CERT.cert_pem), "tls-key-blob": b64(OTHER.key_pem)},
        "tls-key-blob: does not match the certificate",
    ),
    (
        {"tls-cert-blob": b64(EXPIRED.cert_pem), "tls-key-blob": b64(EXPIRED.key_pem)},
        "tls-cert-blob: certificate expired on 2021-01-01",
    ),
    (
        {
            "tls-cert-blob": b64(CERT.cert_pem),
            "tls-key-blob": b64(CERT.key_pem),
            "tls-ca-blob": b64(CERT.key_pem),
        },
        "tls-ca-blob: not a PEM certificate",
    ),
    ({"tls-key-path": "registry.key"}, "tls-key-path: must be an absolute path"),
]


@pytest.mark.parametrize(("config", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_config_blocks_and_writes_nothing(ctx, machine, port, config, message):
    if config.get("debug-port") == "same":
        config = {**config, "debug-port": port}
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    assert state.unit_status.name == "blocked"
    assert state.unit_status.message.startswith("Invalid charm config: ")
    assert message in state.unit_status.message
    assert not (machine.root / "etc").exists()
    assert machine.launches["docker-registry"] == 0


def test_every_problem_is_reported_at_once(ctx, port):
    config = {"log-level": "loud", "storage-cache": "disk", "cache-remoteurl": "x"}
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    message = state.unit_status.message
    for option in ("log-level", "storage-cache", "cache-remoteurl"):
        assert f"{option}:" in message


def test_secrets_never_reach_the_status(ctx, port):
    config = {
        "cache-remoteurl": "not a url",
        "cache-username": "user",
        "cache-password": "hunter2",
        "auth-basic-user": "a:b",
        "auth-basic-password": "sw0rdfish",
    }
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    assert state.unit_status.name == "blocked"
    assert "hunter2" not in state.unit_status.message
    assert "sw0rdfish" not in state.unit_status.message


def test_registry_image_is_ignored_with_a_warning(ctx, port, caplog):
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config={"registry-image": "x:1"}))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    assert "registry-image=x:1 is ignored" in caplog.text
