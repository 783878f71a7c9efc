"""The charm as a registry mirror: containerd pulls upstream images through it.

Upstream registries started by the tests hold images the tests built. The
node's containerd is configured only with what the charm's client-config
action printed, written to a hosts directory as a node would. That the bytes
came through the mirror is read off the mirror's storage.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ops import testing

from charm_context import unit_state
from support import oci, pki, skopeo
from support._proc import CommandError
from support.containerd import Containerd
from support.forward_proxy import ForwardProxy
from support.node import client_config
from support.registry import RegistryProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    with Containerd() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """Images "a", "b", "c" and "other": a shared base and a layer of their own."""
    path = tmp_path_factory.mktemp("layout")
    base = oci.make_layer({"etc/os-release": b"ID=test\n"})
    for name in ("a", "b", "c", "other"):
        oci.build_image(path, name, layers=[base, oci.random_layer(64 * 1024, seed=name)])
    return path


def push(layout: Path, registry: RegistryProcess, name: str, repository: str) -> str:
    """Copy image `name` to `repository:v1` on `registry`; return its manifest digest."""
    skopeo.copy(
        oci.layout_ref(layout, name),
        f"docker://{registry.ref(repository, 'v1')}",
        dest_tls_verify=False,
    )
    return skopeo.inspect_digest(f"docker://{registry.ref(repository, 'v1')}", tls_verify=False)


def own_layer(layout: Path, digest: str) -> set[str]:
    """The image's top layer, which no other image shares (containerd may hold the base)."""
    manifest = json.loads(oci.read_blob(layout, digest))
    return {manifest["layers"][-1]["digest"]}


def stored_blobs(storage: Path) -> set[str]:
    """Digests of the blobs a registry's filesystem storage holds."""
    blobs = storage / "docker/registry/v2/blobs/sha256"
    return {f"sha256:{p.parent.name}" for p in blobs.glob("*/*/data")}


@pytest.fixture
def upstream(layout) -> Iterator[RegistryProcess]:
    with RegistryProcess() as registry:
        yield registry


def test_one_upstream_cached_served_when_upstream_down_and_fallback(
    ctx, machine, port, containerd, layout, upstream, tmp_path
):
    digest = push(layout, upstream, "a", "team/app")
    other = push(layout, upstream, "other", "team/other")
    state = ctx.run(
        ctx.on.config_changed(), unit_state(port, config={"cache-remoteurl": upstream.url})
    )
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    hosts = tmp_path / "certs.d"
    results = client_config(ctx, state, hosts, **{"mirror-of": upstream.netloc})
    assert f'[host."http://127.0.0.1:{port}"]' in results["hosts-toml"]
    storage = machine.root / "srv/registry"
    ref = upstream.ref("team/app", "v1")

    assert containerd.pull(ref, hosts_dir=hosts) == digest
    assert own_layer(layout, digest) <= stored_blobs(storage), "the bytes came via the mirror"

    # The mirror is down: containerd falls back to the upstream (server).
    ctx.run(ctx.on.action("stop"), state)
    other_ref = upstream.ref("team/other", "v1")
    assert containerd.pull(other_ref, hosts_dir=hosts) == other
    assert not own_layer(layout, other) <= stored_blobs(storage)
    containerd.remove_image(other_ref)
    ctx.run(ctx.on.action("start"), state)

    # The upstream is down: what the mirror cached still pulls.
    containerd.remove_image(ref)
    upstream.stop()
    assert containerd.pull(ref, hosts_dir=hosts) == digest

    # Never cached: the mirror says so clearly, and containerd tried the upstream next.
    manifest_url = f"http://127.0.0.1:{port}/v2/team/other/manifests/v1"
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(manifest_url, timeout=10)
    assert answer.value.code == 404
    assert json.loads(answer.value.read())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    tried_upstream = f'Head "{upstream.url}/v2/team/other/manifests/v1".*connection refused'
    with pytest.raises(CommandError, match=tried_upstream):
        containerd.pull(other_ref, hosts_dir=hosts, timeout=60)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_two_upstreams_on_one_endpoint_with_tls_and_auth(
    ctx, machine, port, containerd, layout, upstream, tmp_path
):
    digest_a = push(layout, upstream, "b", "team/a")
    with RegistryProcess() as second:
        digest_b = push(layout, second, "c", "team/b")
        ca = pki.make_ca("mirror-ca")
        cert, key = pki.issue(ca, "127.0.0.1", ["127.0.0.1"])
        mirrors = {upstream.netloc: upstream.url, second.netloc: {"url": second.url}}
        config = {
            "cache-mirrors": yaml.safe_dump(mirrors),
            "auth-basic-user": "alice",
            "auth-basic-password": "s3cret",
            "tls-cert-blob": b64(cert),
            "tls-key-blob": b64(key),
            "tls-ca-blob": b64(ca.cert_pem),
        }
        state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
        assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (https).")
        hosts = tmp_path / "certs.d"
        results = client_config(ctx, state, hosts)
        assert "s3cret" not in json.dumps(results)
        toml = (hosts / upstream.netloc / "hosts.toml").read_text()
        assert f'[host."https://127.0.0.1:{port}/v2/{upstream.netloc}"]' in toml
        assert "override_path = true" in toml
        mirror_storage = machine.root / "srv/registry/mirrors"

        ref_a, ref_b = upstream.ref("team/a", "v1"), second.ref("team/b", "v1")
        # Auth and TLS apply to the mirrors' paths.
        context = ssl.create_default_context(cadata=ca.cert_pem.decode())
        url = f"https://127.0.0.1:{port}/v2/{upstream.netloc}/team/a/manifests/v1"
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(url, timeout=10, context=context)
        assert answer.value.code == 401
        assert answer.value.headers["WWW-Authenticate"].startswith("Basic ")

        assert containerd.pull(ref_a, hosts_dir=hosts, user="alice:s3cret") == digest_a
        assert containerd.pull(ref_b, hosts_dir=hosts, user="alice:s3cret") == digest_b
        blobs_a = stored_blobs(mirror_storage / upstream.netloc)
        blobs_b = stored_blobs(mirror_storage / second.netloc)
        assert own_layer(layout, digest_a) <= blobs_a
        assert own_layer(layout, digest_b) <= blobs_b
        assert not own_layer(layout, digest_b) <= blobs_a, "each upstream has its own cache"

        # The registry itself still takes pushes on the same endpoint.
        cert_dir = tmp_path / "skopeo-certs"
        cert_dir.mkdir()
        (cert_dir / "ca.crt").write_bytes(ca.cert_pem)
        skopeo.copy(
            oci.layout_ref(layout, "other"),
            f"docker://127.0.0.1:{port}/own/other:v1",
            dest_creds="alice:s3cret",
            dest_cert_dir=cert_dir,
        )
        assert (machine.root / "srv/registry/docker/registry/v2/repositories/own").is_dir()

        second.stop()
        containerd.remove_image(ref_b)
        assert containerd.pull(ref_b, hosts_dir=hosts, user="alice:s3cret") == digest_b


def test_upstream_fetches_go_through_the_outbound_proxy(ctx, port, layout, upstream):
    digest = push(layout, upstream, "a", "team/app")
    upstream_url = f"http://upstream.test:{upstream.port}"
    config = {
        "cache-remoteurl": upstream_url,
        "cache-mirrors": f"upstream.test: {upstream_url}",
    }
    with ForwardProxy() as proxy:
        config["registry-http-proxy"] = proxy.url
        ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
        for repository in ("team/app", "upstream.test/team/app"):
            ref = f"docker://127.0.0.1:{port}/{repository}:v1"
            assert skopeo.inspect_digest(ref, tls_verify=False) == digest
        assert proxy.requests[f"upstream.test:{upstream.port}"] >= 4
