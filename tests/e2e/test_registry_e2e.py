"""The charm's own code runs a real registry; skopeo pushes, containerd pulls.

Juju is simulated with Scenario; the unit is a temporary root whose services
run as local processes on 127.0.0.1 (tests/local_machine.py).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from ops import testing

from charm_context import b64, tls_config, unit_state, with_config
from support import oci, pki, skopeo
from support._proc import CommandError
from support.containerd import HostEndpoint, write_hosts_toml

pytestmark = pytest.mark.e2e
SERVICE = "docker-registry"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, str]:
    """An OCI layout holding one two-layer image tagged v1, and its manifest digest."""
    layout = tmp_path_factory.mktemp("layout")
    digest = oci.build_image(
        layout,
        "v1",
        layers=[{"etc/os-release": b"ID=test\n"}, {"app/hello.txt": b"hello registry\n"}],
    )
    return layout, digest


def push(image, netloc: str, repo: str, **kw) -> None:
    layout, _ = image
    skopeo.copy(f"oci:{layout}:v1", f"docker://{netloc}/{repo}", **kw)


def node_hosts(tmp_path: Path, netloc: str, scheme: str, ca: bytes | None = None) -> Path:
    """The hosts.toml a cluster node writes for this registry."""
    hosts_dir = tmp_path / "certs.d"
    write_hosts_toml(
        hosts_dir,
        netloc,
        server_url=f"{scheme}://{netloc}",
        endpoints=[HostEndpoint(f"{scheme}://{netloc}", ca=ca)],
    )
    return hosts_dir


def test_push_and_pull_over_plain_http(ctx, machine, port, containerd, image, tmp_path):
    state = ctx.run(ctx.on.install(), unit_state(port))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    netloc = f"127.0.0.1:{port}"
    push(image, netloc, "demo/app:v1", dest_tls_verify=False)
    digest = containerd.pull(
        f"{netloc}/demo/app:v1", hosts_dir=node_hosts(tmp_path, netloc, "http")
    )
    assert digest == image[1]
    assert (machine.root / "srv/registry/docker/registry/v2/repositories/demo/app").is_dir()


@pytest.fixture
def server_tls(tmp_path):
    ca = pki.make_ca("registry-ca")
    cert_dir = tmp_path / "skopeo-certs"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(ca.cert_pem)
    return ca, cert_dir, tls_config(ca, "127.0.0.1", "localhost")


def test_push_and_pull_over_https(ctx, port, containerd, image, tmp_path, server_tls):
    ca, cert_dir, config = server_tls
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (https).")
    netloc = f"127.0.0.1:{port}"
    push(image, netloc, "secure/app:v1", dest_cert_dir=cert_dir)
    hosts = node_hosts(tmp_path, netloc, "https", ca=ca.cert_pem)
    assert containerd.pull(f"{netloc}/secure/app:v1", hosts_dir=hosts) == image[1]
    # A node that does not trust our CA is refused.
    with pytest.raises(CommandError, match="certificate"):
        containerd.pull(
            f"{netloc}/secure/app:v1", hosts_dir=node_hosts(tmp_path / "x", netloc, "https")
        )


def test_basic_auth(ctx, port, containerd, image, tmp_path):
    config = {"auth-basic-user": "alice", "auth-basic-password": "s3cret"}
    ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    netloc = f"127.0.0.1:{port}"
    with pytest.raises(CommandError, match=r"401|unauthorized|authentication required"):
        push(image, netloc, "private/app:v1", dest_tls_verify=False)
    push(image, netloc, "private/app:v1", dest_tls_verify=False, dest_creds="alice:s3cret")
    hosts = node_hosts(tmp_path, netloc, "http")
    ref = f"{netloc}/private/app:v1"
    with pytest.raises(CommandError, match=r"401|unauthorized"):
        containerd.pull(ref, hosts_dir=hosts, user="alice:wrong")
    assert containerd.pull(ref, hosts_dir=hosts, user="alice:s3cret") == image[1]


def test_bad_tls_keeps_the_serving_registry_and_a_noop_restarts_nothing(
    ctx, machine, port, containerd, image, tmp_path, server_tls
):
    ca, cert_dir, config = server_tls
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    netloc = f"127.0.0.1:{port}"
    push(image, netloc, "keep/app:v1", dest_cert_dir=cert_dir)
    etc = machine.root / "etc/docker/registry"
    before = {p.name: p.read_bytes() for p in etc.iterdir()}
    assert machine.launches[SERVICE] == 1

    _, other_key = pki.issue(ca, "other", ["127.0.0.2"])
    state = ctx.run(ctx.on.config_changed(), with_config(state, tls_key_blob=b64(other_key)))
    assert state.unit_status == testing.BlockedStatus(
        "Invalid charm config: tls-key-blob: does not match the certificate"
    )
    assert {p.name: p.read_bytes() for p in etc.iterdir()} == before
    assert machine.launches[SERVICE] == 1
    hosts = node_hosts(tmp_path, netloc, "https", ca=ca.cert_pem)
    assert containerd.pull(f"{netloc}/keep/app:v1", hosts_dir=hosts) == image[1]

    state = ctx.run(
        ctx.on.config_changed(), with_config(state, tls_key_blob=config["tls-key-blob"])
    )
    assert state.unit_status == testing.ActiveStatus(f"Ready at {netloc} (https).")
    state = ctx.run(ctx.on.config_changed(), state)
    assert machine.launches[SERVICE] == 1, "nothing the registry reads changed"


def test_prometheus_metrics_on_the_debug_port(ctx, port, image):
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config={"prometheus-metrics": True}))
    debug_port = int(state.config["debug-port"])
    assert testing.TCPPort(debug_port) in state.opened_ports
    push(image, f"127.0.0.1:{port}", "metrics/app:v1", dest_tls_verify=False)
    with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert "registry_http_requests_total" in metrics
