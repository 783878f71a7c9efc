"""Builds Scenario contexts for the charm with a `LocalMachine` as its seam."""

from __future__ import annotations

import atexit
import base64
import dataclasses
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import yaml
from ops import testing

from charm import DockerRegistryCharm
from local_machine import LocalMachine
from relations.peer import SECRET_ID_KEY, SECRET_LABEL, WEBSITE_ADDRESS_KEY
from support import pki
from support.wait import free_port_run

PROJECT = Path(__file__).resolve().parent.parent


def _load(name: str) -> dict:
    return yaml.safe_load((PROJECT / name).read_text())


META = _load("metadata.yaml")
CONFIG = _load("config.yaml")
ACTIONS = _load("actions.yaml")


def _charm_root() -> Path:
    """A charm directory holding only the templates.

    Scenario writes the metadata it is given into the charm root while a test
    runs; pointing it at a scratch directory keeps it off the project's files.
    """
    root = Path(tempfile.mkdtemp(prefix="charm-root-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    (root / "templates").symlink_to(PROJECT / "templates")
    return root


CHARM_ROOT = _charm_root()
NO_IMAGES = CHARM_ROOT / "images-resource-empty.tar"
"""An empty `images` resource, as `juju deploy` attaches without --resource."""
NO_IMAGES.touch()


def images_resource(path: Path = NO_IMAGES) -> testing.Resource:
    """The `images` resource holding the file at `path`."""
    return testing.Resource(name="images", path=path)


def charm_context(machine: LocalMachine, unit_id: int = 0) -> testing.Context[DockerRegistryCharm]:
    """A Scenario context whose charm runs on `machine`."""

    class LocalCharm(DockerRegistryCharm):
        def make_machine(self) -> LocalMachine:
            return machine

    return testing.Context(
        LocalCharm,
        meta=META,
        config=CONFIG,
        actions=ACTIONS,
        charm_root=CHARM_ROOT,
        app_name="docker-registry",
        unit_id=unit_id,
    )


# Several units of one application: the leader's http secret, the haproxy unit's address.
HTTP_SECRET = testing.Secret({"http-secret": "shared"}, owner="app", label=SECRET_LABEL)
PROXY_ADDRESS = "127.0.0.2"


def loopback_network(endpoint: str, address: str = "127.0.0.1") -> testing.Network:
    """The unit's address on `endpoint`, on loopback so that tests can reach it."""
    return testing.Network(
        endpoint,
        bind_addresses=[testing.BindAddress([testing.Address(address)])],
        ingress_addresses=[address],
        egress_subnets=["127.0.0.0/8"],
    )


def unit_state(
    port: int, *, leader: bool = True, config: dict | None = None, **kw
) -> testing.State:
    """A unit with loopback networking, the peer relation and `config` on `port`."""
    networks = {
        loopback_network(endpoint)
        for endpoint in ("docker-registry", "website", "cert-provider", "peer")
    }
    relations = kw.pop("relations", [testing.PeerRelation("peer")])
    kw.setdefault("resources", {images_resource()})
    return testing.State(
        leader=leader,
        config={"registry-port": port, "debug-port": free_port_run(8), **(config or {})},
        networks=networks,
        relations=relations,
        **kw,
    )


def with_config(state: testing.State, **options: object) -> testing.State:
    """`state` with some options changed (names with underscores), the rest kept."""
    changed = {name.replace("_", "-"): value for name, value in options.items()}
    return dataclasses.replace(state, config={**state.config, **changed})


def with_relation(state: testing.State, relation: testing.RelationBase) -> testing.State:
    """`state` with `relation` replacing the one of the same id (or added)."""
    others = {r for r in state.relations if r.id != relation.id}
    return dataclasses.replace(state, relations={*others, relation})


def b64(data: bytes | str) -> str:
    """Base64 as operators pass blobs: `base64 -w0 file`."""
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def tls_config(ca: pki.CertificateAuthority, *sans: str) -> dict[str, str]:
    """The tls-*-blob options for a new certificate from `ca` naming `sans`."""
    cert, key = pki.issue(ca, sans[0], list(sans))
    return {"tls-cert-blob": b64(cert), "tls-key-blob": b64(key), "tls-ca-blob": b64(ca.cert_pem)}


def website_address(unit: int) -> str:
    """Unit `unit`'s `website` address: a loopback address of its own, as if on its own machine."""
    return f"127.0.0.{11 + unit}"


def app_unit_state(
    unit: int, port: int, *, leader: bool, units: Iterable[int], config: dict | None = None
) -> testing.State:
    """Unit `unit` of an application of `units` behind one haproxy unit at PROXY_ADDRESS.

    The peers have shared their `website` addresses; the http secret is the
    leader's. The `website` relation is the state's only one of that endpoint.
    """
    peer = testing.PeerRelation(
        "peer",
        local_app_data={SECRET_ID_KEY: HTTP_SECRET.id},
        peers_data={
            other: {
                "ingress-address": website_address(other),
                WEBSITE_ADDRESS_KEY: website_address(other),
            }
            for other in units
            if other != unit
        },
    )
    proxy = testing.Relation(
        "website",
        remote_app_name="haproxy",
        remote_units_data={
            0: {"ingress-address": PROXY_ADDRESS, "private-address": PROXY_ADDRESS}
        },
    )
    state = unit_state(
        port, leader=leader, config=config, relations=[peer, proxy], secrets=[HTTP_SECRET]
    )
    others = {network for network in state.networks if network.binding_name != "website"}
    networks = {*others, loopback_network("website", website_address(unit))}
    return dataclasses.replace(state, networks=networks)
