"""Nodes configured as the containerd charm configures them pull through CRI, as kubelet does.

A real containerd with its CRI plugin gets the registry tables the containerd
charm renders (tests/support/containerd_charm.py) from our `docker-registry`
databag and from `custom_registries` set to what `client-config` printed, and
the CA the relation installs into the node's trust store. The pulls go
through our own small CRI client (tests/support/cri.py), and the repository
digest ImageStatus reports must be the source's (seed 004's method 1).

containerd treats a loopback registry as plain HTTP, which would hide the
https a real node speaks to a scheme-less endpoint. So the registry is named
`registry.test` (its `http-host`), which only containerd resolves, to
127.0.0.1, through its own /etc/hosts in a private mount namespace. Upstream
names (gcr.io, ...) resolve there to a loopback address where nothing
listens, so a fallback never leaves the machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from ops import testing

from charm_context import tls_config, unit_state, with_config
from support import oci, pki, skopeo
from support.containerd import Containerd
from support.containerd_charm import ContainerdCharmNode, registry_toml
from support.cri import CRIError
from support.registry import RegistryProcess

pytestmark = pytest.mark.e2e

REGISTRY_NAME = "registry.test"
NOWHERE = "127.0.0.9"  # nothing listens there: an upstream the node must not reach
NAMES = {
    REGISTRY_NAME: "127.0.0.1",
    "gcr.io": NOWHERE,
    "somehost.io": NOWHERE,
    "registry-1.docker.io": NOWHERE,
    "upstream.test": NOWHERE,
}
NAMESPACE = "test-namespace"
CA = pki.make_ca("registry-ca")
AUTH = {"auth-basic-user": "node", "auth-basic-password": "pw-12345"}
TLS = tls_config(CA, REGISTRY_NAME, "127.0.0.1")
SECURITY = {"plain": {}, "auth": AUTH, "tls": TLS, "tls-auth": {**TLS, **AUTH}}
# Which custom_registries the node gets, and whether it is related to the registry.
MODES = {
    "relation": (None, True),
    "relation+custom": ("custom-registries", True),
    "custom": ("custom-registries-unrelated", False),
}
OWN_REPO = "cri/own:v1"
APP_REPO = "cri/app:v1"  # pulled as gcr.io/cri/app:v1, pushed under NAMESPACE


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, str]:
    layout = tmp_path_factory.mktemp("layout")
    digest = oci.build_image(layout, "v1", layers=[{"data/cri.txt": b"pulled through CRI\n"}])
    return layout, digest


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> ContainerdCharmNode:
    return ContainerdCharmNode(tmp_path_factory.mktemp("node"))


@pytest.fixture(scope="module")
def cri_containerd(node) -> Iterator[Containerd]:
    """One containerd for the module; each test restarts it with its node's config."""
    registries, _ = node.registries()
    with Containerd(cri_registry=registry_toml(registries), etc_hosts=NAMES) as daemon:
        yield daemon


def registry_state(
    ctx, port: int, config: dict, fill: Callable[[], None] = lambda: None
) -> tuple[testing.State, testing.Relation]:
    """The charm serving `config` at registry.test, related to a containerd application.

    `fill` pushes images first: with `http-host` set the registry sends upload
    locations under that name, which only containerd can resolve.
    """
    relation = testing.Relation("docker-registry", remote_app_name="containerd")
    state = unit_state(port, config=config, relations=[testing.PeerRelation("peer"), relation])
    state = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    fill()
    scheme = "https" if "tls-cert-blob" in config else "http"
    http_host = {"http-host": f"{scheme}://{REGISTRY_NAME}:{port}"}
    state = ctx.run(ctx.on.config_changed(), with_config(state, **http_host))
    return state, relation


def push(image, port: int, config: dict, destination: str, tmp_path: Path) -> None:
    """Put the test image into the charm's registry, on loopback, as an operator's push."""
    layout, _ = image
    kw: dict = {"dest_tls_verify": False}
    if "tls-cert-blob" in config:
        cert_dir = tmp_path / "push-certs"
        cert_dir.mkdir(exist_ok=True)
        (cert_dir / "ca.crt").write_bytes(CA.cert_pem)
        kw = {"dest_cert_dir": cert_dir}
    if "auth-basic-user" in config:
        kw["dest_creds"] = f"{config['auth-basic-user']}:{config['auth-basic-password']}"
    skopeo.copy(oci.layout_ref(layout, "v1"), f"docker://127.0.0.1:{port}/{destination}", **kw)


def client_config(ctx, state: testing.State, **params: object) -> dict[str, str]:
    ctx.run(ctx.on.action("client-config", params=params), state)
    assert ctx.action_results is not None
    return ctx.action_results


def pulled_digest(daemon: Containerd, ref: str) -> str:
    """Pull `ref` through CRI and return its repository digest; the image is removed after."""
    daemon.cri.remove(ref)
    try:
        daemon.cri.pull(ref, timeout=60)
        return daemon.cri.repo_digest(ref)
    finally:
        daemon.cri.remove(ref)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("security", SECURITY)
def test_containerd_charm_node_pulls_through_cri(
    ctx, port, node, cri_containerd, image, tmp_path, security, mode
):
    config = SECURITY[security]

    def fill() -> None:
        push(image, port, config, OWN_REPO, tmp_path)
        push(image, port, config, f"{NAMESPACE}/{APP_REPO}", tmp_path)

    state, relation = registry_state(ctx, port, config, fill)
    plain = "tls-cert-blob" not in config
    how = "http; containerd nodes need TLS" if plain else "https"
    assert state.unit_status == testing.ActiveStatus(f"Ready at {REGISTRY_NAME}:{port} ({how}).")
    results = client_config(
        ctx, state, **{"mirror-of": "gcr.io", "namespace": NAMESPACE, "include-password": True}
    )
    custom_key, related = MODES[mode]
    registries, trusted = node.registries(
        custom_registries=results[custom_key] if custom_key else "[]",
        relation=state.get_relation(relation.id).local_unit_data if related else None,
    )
    # containerd starts: nothing docs/how-to/connect-nodes.md says to set collides with the
    # relation's tables.
    cri_containerd.restart(cri_registry=registry_toml(registries), trusted_pem=trusted)
    _, digest = image

    own = f"{REGISTRY_NAME}:{port}/{OWN_REPO}"
    if plain and related:
        # The relation's scheme-less endpoint is https to containerd: the status says so.
        with pytest.raises(CRIError, match="server gave HTTP response to HTTPS client"):
            cri_containerd.cri.pull(own, timeout=60)
    else:
        assert pulled_digest(cri_containerd, own) == digest
    if custom_key:
        assert pulled_digest(cri_containerd, f"gcr.io/{APP_REPO}") == digest


def test_unrelated_nodes_need_the_password_added_as_the_readme_says(
    ctx, port, node, cri_containerd, image, tmp_path
):
    config = SECURITY["tls-auth"]
    state, _ = registry_state(
        ctx, port, config, lambda: push(image, port, config, OWN_REPO, tmp_path)
    )
    listed = json.loads(client_config(ctx, state)["custom-registries-unrelated"])
    assert config["auth-basic-password"] not in json.dumps(listed)
    own = f"{REGISTRY_NAME}:{port}/{OWN_REPO}"
    registries, _ = node.registries(custom_registries=json.dumps(listed))
    cri_containerd.restart(cri_registry=registry_toml(registries), trusted_pem=b"")
    with pytest.raises(CRIError, match="401 Unauthorized"):
        cri_containerd.cri.pull(own, timeout=60)
    # docs/how-to/connect-nodes.md's jq: map(if .username then .password = $p else . end)
    password = config["auth-basic-password"]
    added = [{**r, "password": password} if "username" in r else r for r in listed]
    registries, _ = node.registries(custom_registries=json.dumps(added))
    cri_containerd.restart(cri_registry=registry_toml(registries), trusted_pem=b"")
    assert pulled_digest(cri_containerd, own) == image[1]


def test_the_unrelated_list_with_the_relation_stops_containerd(ctx, port, node, tmp_path):
    """Why client-config prints two lists: the wrong one on a related node is fatal."""
    state, relation = registry_state(ctx, port, SECURITY["tls-auth"])
    results = client_config(ctx, state, **{"include-password": True})
    registries, trusted = node.registries(
        custom_registries=results["custom-registries-unrelated"],
        relation=state.get_relation(relation.id).local_unit_data,
    )
    daemon = Containerd(cri_registry=registry_toml(registries), trusted_pem=trusted)
    with pytest.raises(RuntimeError, match=r"failed to load TOML.*duplicated tables"):
        daemon.start()


def stored_blobs(storage: Path) -> set[str]:
    """Digests of the blobs a registry's filesystem storage holds."""
    blobs = storage / "docker/registry/v2/blobs/sha256"
    return {f"sha256:{p.parent.name}" for p in blobs.glob("*/*/data")}


def test_cache_mirrors_upstream_through_cri_with_the_relation(
    ctx, machine, port, node, cri_containerd, image, tmp_path
):
    layout, digest = image
    with RegistryProcess() as upstream:
        skopeo.copy(
            oci.layout_ref(layout, "v1"),
            f"docker://{upstream.ref('team/app', 'v1')}",
            dest_tls_verify=False,
        )
        mirrors = yaml.safe_dump({"upstream.test": upstream.url})
        config = {**SECURITY["tls-auth"], "cache-mirrors": mirrors}
        state, relation = registry_state(ctx, port, config)
        assert state.unit_status == testing.ActiveStatus(
            f"Ready at {REGISTRY_NAME}:{port} (https)."
        )
        results = client_config(ctx, state)
        assert json.loads(results["custom-registries"]) == [
            {"host": "upstream.test", "url": f"https://{REGISTRY_NAME}:{port}/v2/upstream.test"}
        ]
        registries, trusted = node.registries(
            custom_registries=results["custom-registries"],
            relation=state.get_relation(relation.id).local_unit_data,
        )
        cri_containerd.restart(cri_registry=registry_toml(registries), trusted_pem=trusted)
        assert pulled_digest(cri_containerd, "upstream.test/team/app:v1") == digest
    cached = stored_blobs(machine.root / "srv/registry/mirrors/upstream.test")
    manifest = json.loads(oci.read_blob(layout, digest))
    assert {layer["digest"] for layer in manifest["layers"]} <= cached, "came via the mirror"


@pytest.mark.parametrize("security", ["auth", "tls-auth"])
def test_hosts_toml_node_pulls_a_namespaced_mirror_through_cri(
    ctx, port, cri_containerd, image, tmp_path, security
):
    """A node outside Juju (MicroK8s): config_path with client-config's files and login."""
    config = SECURITY[security]

    def fill() -> None:
        push(image, port, config, OWN_REPO, tmp_path)
        push(image, port, config, f"{NAMESPACE}/{APP_REPO}", tmp_path)

    state, _ = registry_state(ctx, port, config, fill)
    hosts_dir = tmp_path / "certs.d"
    results = client_config(
        ctx,
        state,
        **{
            "mirror-of": "gcr.io somehost.io",
            "namespace": NAMESPACE,
            "hosts-dir": str(hosts_dir),
            "include-password": True,
        },
    )
    for relative, content in json.loads(results["files"]).items():
        (hosts_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (hosts_dir / relative).write_text(content)
    cri_registry = (
        '[plugins."io.containerd.grpc.v1.cri".registry]\n'
        f'  config_path = "{hosts_dir}"\n' + results["containerd-auth-toml"]
    )
    cri_containerd.restart(cri_registry=cri_registry, trusted_pem=b"")
    _, digest = image
    assert pulled_digest(cri_containerd, f"gcr.io/{APP_REPO}") == digest
    assert pulled_digest(cri_containerd, f"somehost.io/{APP_REPO}") == digest
    assert pulled_digest(cri_containerd, f"{REGISTRY_NAME}:{port}/{OWN_REPO}") == digest


def test_each_containerd_application_pulls_with_its_own_credential_until_revoked(
    ctx, port, node, cri_containerd, image, tmp_path
):
    """Two clusters (two containerd applications): two pull-only credentials, revoked apart."""
    config = SECURITY["tls-auth"]
    first = testing.Relation("docker-registry", remote_app_name="containerd")
    second = testing.Relation("docker-registry", remote_app_name="containerd-gpu")
    http_host = {"http-host": f"https://{REGISTRY_NAME}:{port}"}
    state = unit_state(
        port,
        config={**config, **http_host},
        relations=[testing.PeerRelation("peer"), first, second],
    )
    state = ctx.run(ctx.on.relation_joined(first, remote_unit=0), state)
    push(image, port, config, OWN_REPO, tmp_path)
    bags = {r.id: dict(state.get_relation(r.id).local_unit_data) for r in (first, second)}
    users = {r_id: json.loads(bag["basic_user"]) for r_id, bag in bags.items()}
    assert users[first.id] != users[second.id]
    assert config["auth-basic-password"] not in json.dumps(bags)
    own = f"{REGISTRY_NAME}:{port}/{OWN_REPO}"

    def node_of(relation_id: int) -> None:
        registries, trusted = node.registries(relation=bags[relation_id])
        cri_containerd.restart(cri_registry=registry_toml(registries), trusted_pem=trusted)

    for relation in (first, second):
        node_of(relation.id)
        assert pulled_digest(cri_containerd, own) == image[1]
    state = ctx.run(ctx.on.relation_broken(state.get_relation(first.id)), state)
    node_of(first.id)
    with pytest.raises(CRIError, match="401 Unauthorized"):
        cri_containerd.cri.pull(own, timeout=60)
    node_of(second.id)
    assert pulled_digest(cri_containerd, own) == image[1]
