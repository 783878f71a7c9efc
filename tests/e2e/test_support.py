"""Proves the e2e support library against the real tools: skopeo, registry, containerd, haproxy.

Each test pushes a locally built OCI image into a real registry and has a real containerd pull
it through a hosts.toml, comparing digests end to end. Negative controls check that what a
test relies on (hosts.toml routing, CA trust, credentials) is really what made it pass.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from support import CommandError, oci, pki, pprof, skopeo
from support.containerd import Containerd, HostEndpoint, write_hosts_toml
from support.haproxy import HAProxy, simple_proxy_cfg
from support.registry import RegistryProcess
from support.wait import WaitTimeoutError, free_port, wait_for

pytestmark = pytest.mark.e2e

BASE = {"etc/os-release": b"ID=test\n", "bin/tool": b"#!/bin/sh\necho base\n"}
APP = {"app/hello.txt": b"hello from the app layer\n"}


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, str]:
    """A two-layer image tagged v1 in an OCI layout: (layout dir, manifest digest)."""
    layout = tmp_path / "layout"
    digest = oci.build_image(layout, "v1", layers=[BASE, APP])
    return layout, digest


@pytest.fixture
def containerd() -> Iterator[Containerd]:
    with Containerd() as daemon:
        yield daemon


@pytest.fixture
def ca() -> pki.CertificateAuthority:
    return pki.make_ca("e2e test CA")


def _push(layout: Path, reg: RegistryProcess, repo: str = "test/img", **kwargs: Any) -> str:
    ref = reg.ref(repo, "v1")
    skopeo.copy(oci.layout_ref(layout, "v1"), f"docker://{ref}", **kwargs)
    return ref


def _layer_digests(layout: Path, manifest_digest: str) -> list[str]:
    manifest = json.loads(oci.read_blob(layout, manifest_digest))
    return [layer["digest"] for layer in manifest["layers"]]


# --- library self-checks (no daemons) ---------------------------------------------------------


def test_wait_for_returns_value_and_names_what_timed_out():
    calls = iter([0, None, "ready"])
    assert wait_for(lambda: next(calls), timeout=5, interval=0.01, what="x") == "ready"
    with pytest.raises(WaitTimeoutError, match="waiting for the impossible"):
        wait_for(lambda: False, timeout=0.2, interval=0.01, what="the impossible")


def test_oci_build_is_deterministic_and_layers_are_shared(tmp_path: Path):
    first = oci.build_image(tmp_path / "a", "v1", layers=[BASE, APP])
    again = oci.build_image(tmp_path / "b", "v1", layers=[BASE, APP])
    assert first == again

    shared = tmp_path / "shared"
    base = oci.make_layer(BASE)
    d1 = oci.build_image(shared, "one", layers=[base, {"one.txt": b"1"}])
    d2 = oci.build_image(shared, "two", layers=[base, {"two.txt": b"2"}])
    assert d1 != d2
    assert _layer_digests(shared, d1)[0] == _layer_digests(shared, d2)[0] == base.digest
    index = json.loads((shared / "index.json").read_text())
    tags = {m["annotations"][oci.REF_NAME_ANNOTATION]: m["digest"] for m in index["manifests"]}
    assert tags == {"one": d1, "two": d2}

    # Re-tagging replaces the tag rather than adding a duplicate.
    d3 = oci.build_image(shared, "two", files={"three.txt": b"3"})
    index = json.loads((shared / "index.json").read_text())
    assert len(index["manifests"]) == 2
    assert {m["digest"] for m in index["manifests"]} == {d1, d3}

    blob = oci.random_bytes(4096, seed=1)
    assert blob == oci.random_bytes(4096, seed=1) != oci.random_bytes(4096, seed=2)
    layer = oci.make_layer(oci.random_layer(256 * 1024, seed=1))
    assert layer.size > 256 * 1024  # incompressible: gzip cannot shrink it


def test_pki_issue_and_csr_sign(ca: pki.CertificateAuthority):
    cert_pem, _key = pki.issue(ca, "registry", ["127.0.0.1", "registry.test", "::1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca.cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert san.get_values_for_type(x509.DNSName) == ["registry.test"]

    csr_pem, _csr_key = pki.make_csr("unit-0", ["10.0.0.5", "unit-0.test"])
    signed = x509.load_pem_x509_certificate(pki.csr_sign(ca, csr_pem, days=5))
    signed.verify_directly_issued_by(ca.cert)
    assert signed.subject.rfc4514_string() == "CN=unit-0"
    lifetime = signed.not_valid_after_utc - signed.not_valid_before_utc
    assert datetime.timedelta(days=4) < lifetime < datetime.timedelta(days=6)


# --- end to end -------------------------------------------------------------------------------


def test_plain_http_push_and_pull(image: tuple[Path, str], containerd: Containerd, tmp_path: Path):
    layout, digest = image
    with RegistryProcess() as reg:
        ref = _push(layout, reg, dest_tls_verify=False)
        assert skopeo.inspect_digest(f"docker://{ref}", tls_verify=False) == digest

        hosts = tmp_path / "hosts"
        write_hosts_toml(hosts, reg.netloc, endpoints=[HostEndpoint(reg.url)])
        assert containerd.pull(ref, hosts_dir=hosts) == digest

        content = containerd.ctr("content", "ls", "--quiet").stdout.split()
        assert set(_layer_digests(layout, digest)) <= set(content)


def test_mirror_routing_comes_from_hosts_toml(
    image: tuple[Path, str], containerd: Containerd, tmp_path: Path
):
    """A name that cannot resolve is pulled from a loopback mirror only via hosts.toml.

    containerd 1.6 falls back to plain HTTP for 127.0.0.1 on its own, so pulling
    `127.0.0.1:PORT/...` over HTTP proves nothing about hosts.toml; a mirrored name does.
    """
    layout, digest = image
    upstream = "registry.invalid"
    ref = f"{upstream}/test/img:v1"
    with RegistryProcess() as mirror:
        _push(layout, mirror, dest_tls_verify=False)
        hosts = tmp_path / "hosts"

        with pytest.raises(CommandError):
            containerd.pull(ref, hosts_dir=hosts, timeout=30)  # no hosts.toml yet

        write_hosts_toml(
            hosts,
            upstream,
            server_url=f"https://{upstream}",
            endpoints=[HostEndpoint(mirror.url, capabilities=("pull", "resolve"))],
        )
        assert containerd.pull(ref, hosts_dir=hosts) == digest
        # containerd tells a mirror which upstream it stands in for.
        assert "/v2/test/img/manifests/v1?ns=registry.invalid" in mirror.log_tail(50_000)


def test_https_with_ca_and_basic_auth(
    image: tuple[Path, str],
    containerd: Containerd,
    ca: pki.CertificateAuthority,
    tmp_path: Path,
):
    layout, digest = image
    cert_pem, key_pem = pki.issue(ca, "registry", ["127.0.0.1", "localhost"])
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(ca.cert_pem)

    with RegistryProcess(
        users={"alice": "correct horse"}, tls_cert_pem=cert_pem, tls_key_pem=key_pem
    ) as reg:
        assert reg.url.startswith("https://127.0.0.1:")
        assert reg.creds is not None
        ref = _push(layout, reg, dest_creds=reg.creds, dest_cert_dir=cert_dir)
        assert skopeo.inspect_digest(f"docker://{ref}", creds=reg.creds, cert_dir=cert_dir) == (
            digest
        )

        untrusted = tmp_path / "untrusted"
        write_hosts_toml(untrusted, reg.netloc, endpoints=[HostEndpoint(reg.url)])
        with pytest.raises(CommandError, match=r"x509|certificate"):
            containerd.pull(ref, hosts_dir=untrusted, user=reg.creds, timeout=30)

        hosts = tmp_path / "hosts"
        toml_path = write_hosts_toml(
            hosts,
            reg.netloc,
            server_url=reg.url,
            endpoints=[HostEndpoint(reg.url, ca=ca.cert_pem)],
        )
        assert (toml_path.parent / "host0-ca.crt").read_bytes() == ca.cert_pem

        with pytest.raises(CommandError, match=r"(?i)401|unauthorized"):
            containerd.pull(ref, hosts_dir=hosts, user="alice:wrong", timeout=30)
        with pytest.raises(KeyError):
            containerd.image_digest(ref)

        assert containerd.pull(ref, hosts_dir=hosts, user=reg.creds) == digest


def test_expired_certificate_is_rejected(
    image: tuple[Path, str],
    containerd: Containerd,
    ca: pki.CertificateAuthority,
    tmp_path: Path,
):
    layout, _digest = image
    now = datetime.datetime.now(datetime.timezone.utc)
    cert_pem, key_pem = pki.issue(
        ca,
        "registry",
        ["127.0.0.1"],
        not_before=now - datetime.timedelta(days=10),
        not_after=now - datetime.timedelta(days=1),
    )
    with RegistryProcess(tls_cert_pem=cert_pem, tls_key_pem=key_pem) as reg:
        _push(layout, reg, dest_tls_verify=False)
        hosts = tmp_path / "hosts"
        write_hosts_toml(hosts, reg.netloc, endpoints=[HostEndpoint(reg.url, ca=ca.cert_pem)])
        with pytest.raises(CommandError, match="expired"):
            containerd.pull(reg.ref("test/img", "v1"), hosts_dir=hosts, timeout=30)


def test_pull_through_haproxy(image: tuple[Path, str], containerd: Containerd, tmp_path: Path):
    layout, digest = image
    with RegistryProcess() as reg:
        _push(layout, reg, dest_tls_verify=False)
        port = free_port()
        with HAProxy(simple_proxy_cfg(port, reg.netloc), wait_ports=[port]) as proxy:
            front = f"127.0.0.1:{port}"
            ref = f"{front}/test/img:v1"
            hosts = tmp_path / "hosts"
            write_hosts_toml(hosts, front, endpoints=[HostEndpoint(f"http://{front}")])
            assert containerd.pull(ref, hosts_dir=hosts) == digest
            # The requests really went through haproxy (its httplog goes to our log file).
            wait_for(
                lambda: "/v2/test/img/manifests/v1" in proxy.log_tail(20_000),
                timeout=10,
                what="haproxy to log the manifest request",
            )


def test_haproxy_rejects_invalid_config():
    with pytest.raises(CommandError, match="haproxy"):
        HAProxy("frontend broken\n    bind 127.0.0.1:1 nonsense-keyword\n", wait_ports=[1]).start()


def test_pull_through_cache_registry(
    image: tuple[Path, str], containerd: Containerd, tmp_path: Path
):
    layout, digest = image
    # No auth upstream: distribution 2.8 only sends proxy credentials to Bearer-token
    # upstreams, never to basic-auth ones (distribution/distribution#3153).
    with RegistryProcess() as upstream:
        _push(layout, upstream, dest_tls_verify=False)
        with RegistryProcess(proxy_remote_url=upstream.url) as cache:
            hosts = tmp_path / "hosts"
            write_hosts_toml(hosts, cache.netloc, endpoints=[HostEndpoint(cache.url)])
            assert containerd.pull(cache.ref("test/img", "v1"), hosts_dir=hosts) == digest
            # The cache stored what it fetched from upstream.
            blobs = cache.storage_dir / "docker" / "registry" / "v2" / "blobs" / "sha256"
            for layer_digest in _layer_digests(layout, digest):
                hexdigest = layer_digest.split(":", 1)[1]
                assert (blobs / hexdigest[:2] / hexdigest / "data").is_file()


def test_pprof_counts_a_registrys_requests_and_profiles_it(tmp_path: Path):
    """The benchmarks' profiles: request counts from /metrics and a pprof CPU profile."""
    debug = f"127.0.0.1:{free_port()}"
    metrics = {"addr": debug, "prometheus": {"enabled": True, "path": "/metrics"}}
    with RegistryProcess(extra_config={"http": {"debug": metrics}}) as registry:

        def two_requests() -> None:
            for path in ("/v2/", "/v2/nothing/manifests/v1"):
                with contextlib.suppress(urllib.error.HTTPError):
                    urllib.request.urlopen(registry.url + path, timeout=10).close()

        profile = tmp_path / "registry.pprof"
        with pprof.cpu_profile(debug, 1, profile):
            counted = pprof.counted(debug, two_requests)
    assert counted == {"base get 200": 1, "manifest get 404": 1}
    assert profile.read_bytes()[:2] == b"\x1f\x8b"  # pprof's gzipped protobuf
