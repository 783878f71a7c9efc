"""The values issue 9 found accepted, each now refused before anything is written.

A registry serves first; the bad value blocks the unit naming the option,
every file stays byte-identical (content and mode) and nothing restarts.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import bcrypt
import pytest
from ops import testing

from charm_context import b64, tls_config, unit_state, with_config
from state.config import CharmConfig, InvalidConfigError
from support import pki
from support.files import snapshot

CA = pki.make_ca()
OTHER_CA = pki.make_ca("other-ca")
CERT = pki.issue(CA, "127.0.0.1", ["127.0.0.1"])
SERVICE = "docker-registry"


def openssl_self_signed(*keygen: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 with a key openssl makes (kinds we refuse)."""
    with tempfile.TemporaryDirectory() as folder:
        key, cert = Path(folder, "key.pem"), Path(folder, "cert.pem")
        subprocess.run([*keygen, "-out", str(key)], check=True, capture_output=True)
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-new", "-key", str(key), "-out", str(cert)),
                *(
                    "-days",
                    "90",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ),
            ],
            check=True,
            capture_output=True,
        )
        return cert.read_bytes(), key.read_bytes()


def key_blobs(cert: bytes, key: bytes) -> dict[str, str]:
    return {"tls-cert-blob": b64(cert), "tls-key-blob": b64(key)}


def dsa_key() -> tuple[bytes, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        params = Path(folder, "params.pem")
        subprocess.run(
            [
                *("openssl", "genpkey", "-genparam", "-algorithm", "DSA"),
                *("-pkeyopt", "dsa_paramgen_bits:2048", "-out", str(params)),
            ],
            check=True,
            capture_output=True,
        )
        return openssl_self_signed("openssl", "genpkey", "-paramfile", str(params))


DSA_CERT = dsa_key()
EC_EXPLICIT = openssl_self_signed(
    "openssl", "ecparam", "-name", "prime256v1", "-param_enc", "explicit", "-genkey", "-noout"
)
PROXY_INJECTION = "http://p:1/\nExecStartPre=+/bin/sh -c 'touch /tmp/owned'"

HOSTILE = [
    ({"registry-http-proxy": PROXY_INJECTION}, "registry-http-proxy: must be an absolute"),
    ({"registry-https-proxy": "http://p:1/\tx"}, "registry-https-proxy: must be an absolute"),
    ({"registry-https-proxy": 'http://p:1/"x'}, "registry-https-proxy: must be an absolute"),
    ({"http-host": "http://reg istry:5000"}, "http-host: must be an absolute"),
    ({"http-host": "http://registry:5000/a\\b"}, "http-host: must be an absolute"),
    ({"http-host": "http://registry:5000/%zz"}, "http-host: must be an absolute"),
    ({"http-host": "http://registry:5000/\x07"}, "http-host: must be an absolute"),
    ({"http-host": "http://registry\U0001f680:5000"}, "http-host: must be an absolute"),
    (key_blobs(*DSA_CERT), "tls-key-blob: the registry takes RSA, ECDSA (named curve) or Ed25519"),
    (key_blobs(*EC_EXPLICIT), "tls-key-blob: EC keys must use a named curve"),
    (
        {**tls_config(CA, "127.0.0.1"), "tls-ca-path": "/etc/docker/registry/config.yml"},
        "tls-ca-path: names a file or folder the charm uses for itself",
    ),
    (
        {"tls-ca-path": "/etc/docker/registry/registry.crt"},
        "tls-cert-path, tls-ca-path: must name different files",
    ),
    ({"tls-ca-path": "/etc/ssl/ca\0.crt"}, "tls-ca-path: must be an absolute path to a file"),
    ({"tls-ca-path": "/etc/ssl/../ca.crt"}, "tls-ca-path: must be a normalised path"),
    ({"tls-key-path": "/srv/registry/docker/k"}, "tls-key-path: names a file or folder the charm"),
    (
        {"cache-mirrors": '"docker.io\\n": https://registry-1.docker.io'},
        "cache-mirrors: 'docker.io\\n' is not a registry host",
    ),
    ({"cache-mirrors": "[" * 5000 + "]" * 5000}, "cache-mirrors: nested too deeply"),
    (
        {"auth-basic-password": "x" * 73},
        "auth-basic-password: must be at most 72 bytes",
    ),
    ({"auth-basic-password": "p", "auth-basic-user": "#admin"}, "auth-basic-user: must be"),
    ({"auth-basic-password": "p", "auth-basic-user": " admin"}, "auth-basic-user: must be"),
    ({"auth-basic-password": "p", "auth-basic-user": "ad\nmin"}, "auth-basic-user: must be"),
    (
        {**key_blobs(*CERT), "tls-ca-blob": b64(OTHER_CA.cert_pem)},
        "tls-ca-blob: does not verify the certificate",
    ),
    (
        tls_config(CA, "10.1.1.1"),
        "tls-cert-blob: the certificate does not name 127.0.0.1, where clients reach the"
        " registry (the unit)",
    ),
    (
        {**tls_config(CA, "127.0.0.1"), "http-host": "https://registry.example:5000"},
        "tls-cert-blob: the certificate does not name registry.example",
    ),
    (
        {"http-host": "https://127.0.0.1:5000"},
        "http-host: https:// but the registry has no certificate",
    ),
    (
        {**tls_config(CA, "127.0.0.1"), "http-host": "http://127.0.0.1:5000"},
        "http-host: http:// but the registry serves TLS (tls-cert-blob)",
    ),
]


@pytest.mark.parametrize(("config", "message"), HOSTILE, ids=[m for _, m in HOSTILE])
def test_hostile_value_blocks_and_touches_nothing(ctx, machine, port, config, message):
    state = ctx.run(ctx.on.install(), unit_state(port))
    before = snapshot(machine.root)
    state = ctx.run(ctx.on.config_changed(), with_config(state, **_names(config)))
    assert state.unit_status.name == "blocked"
    assert message in state.unit_status.message
    assert snapshot(machine.root) == before
    assert machine.launches[SERVICE] == 1
    assert machine.running(SERVICE)


def _names(config: dict) -> dict:
    return {name.replace("-", "_"): value for name, value in config.items()}


def test_a_foreign_file_at_a_tls_path_is_never_removed_or_replaced(ctx, machine, port):
    bundle = machine.root / "etc/ssl/certs/ca-certificates.crt"
    bundle.parent.mkdir(parents=True)
    bundle.write_bytes(b"system CA bundle")
    bundle.chmod(0o444)
    config = {"tls-ca-path": "/etc/ssl/certs/ca-certificates.crt"}
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    assert state.unit_status.name == "active"
    state = ctx.run(ctx.on.update_status(), state)
    assert bundle.read_bytes() == b"system CA bundle"
    assert bundle.stat().st_mode & 0o777 == 0o444

    state = ctx.run(ctx.on.config_changed(), with_config(state, **tls_config(CA, "127.0.0.1")))
    assert state.unit_status == testing.BlockedStatus(
        f"Invalid charm config: tls-ca-path: {bundle} exists and was not written by the charm"
    )
    assert bundle.read_bytes() == b"system CA bundle"


def test_a_tls_path_that_is_a_folder_blocks(ctx, machine, port):
    (machine.root / "etc/ssl/private").mkdir(parents=True)
    config = {**tls_config(CA, "127.0.0.1"), "tls-key-path": "/etc/ssl/private"}
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    assert state.unit_status.name == "blocked"
    assert "tls-key-path:" in state.unit_status.message
    assert "is not a regular file" in state.unit_status.message


def test_tls_files_the_charm_wrote_elsewhere_go_when_tls_goes(ctx, machine, port):
    config = {**tls_config(CA, "127.0.0.1"), "tls-ca-path": "/etc/ssl/registry-ca.crt"}
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    ca = machine.root / "etc/ssl/registry-ca.crt"
    assert ca.read_bytes() == CA.cert_pem
    plain = {**state.config, "tls-cert-blob": "", "tls-key-blob": "", "tls-ca-blob": ""}
    state = ctx.run(ctx.on.config_changed(), testing.State(**{**vars(state), "config": plain}))
    assert not ca.exists()
    assert state.unit_status.name == "active"


def test_a_certificate_close_to_expiry_is_reported_while_serving(ctx, port):
    cert = pki.issue(CA, "127.0.0.1", ["127.0.0.1"], days=10)
    config = {**key_blobs(*cert), "tls-ca-blob": b64(CA.cert_pem)}
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    assert state.unit_status.name == "active"
    assert state.unit_status.message.startswith(f"Ready at 127.0.0.1:{port} (https).")
    assert "The certificate expires on " in state.unit_status.message


# --- Juju secrets ------------------------------------------------------------


def test_a_password_from_a_juju_secret_follows_its_rotation(ctx, machine, port):
    secret = testing.Secret(
        tracked_content={"auth-basic-password": "first"},
        latest_content={"auth-basic-password": "first"},
    )
    config = {"auth-basic-password": secret.id}
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config, secrets={secret}))
    assert state.unit_status.name == "active"
    htpasswd = machine.root / "etc/docker/registry/htpasswd"
    first = htpasswd.read_text()
    rotated = testing.Secret(
        id=secret.id, tracked_content={"password": "first"}, latest_content={"value": "second"}
    )
    state = ctx.run(
        ctx.on.secret_changed(rotated), testing.State(**{**vars(state), "secrets": {rotated}})
    )
    assert htpasswd.read_text() != first
    assert bcrypt.checkpw(b"second", htpasswd.read_text().split(":", 1)[1].strip().encode())
    assert "second" not in state.unit_status.message


def test_a_secret_we_may_not_read_blocks_naming_the_option(ctx, port):
    config = {"storage-s3-secretkey": "secret:" + "a" * 20, "storage-s3-accesskey": "k"}
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    assert state.unit_status.name == "blocked"
    assert "storage-s3-secretkey: cannot read secret:aaaa" in state.unit_status.message
    assert "grant-secret" in state.unit_status.message


def test_a_mirror_password_from_a_juju_secret():
    uri = "secret:" + "b" * 20
    mirrors = f"docker.io: {{url: https://registry-1.docker.io, username: u, password: {uri}}}"
    config = CharmConfig(cache_mirrors=mirrors, secrets={uri: {"password": "hunter2"}})
    assert config.mirrors[0].upstream.password == "hunter2"
    with pytest.raises(InvalidConfigError, match=r"docker\.io: cannot read the password's secret"):
        CharmConfig(cache_mirrors=mirrors, secrets={uri: None})
