"""The registry on object storage for real: S3 and Swift from one Swift all-in-one.

The charm's own config renders the registry's storage; the store is
OpenStack Swift from Debian's packages on loopback (tests/support/swift.py),
its s3api middleware serving S3. S3 requests go through a relay that keeps
what the registry sent, so the signature version is read off the wire.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
from pathlib import Path

import pytest
from ops import testing

from charm_context import (
    PROXY_ADDRESS,
    app_unit_state,
    charm_context,
    unit_state,
    website_address,
    with_relation,
)
from local_machine import LocalMachine
from support import haproxy_charm, oci, skopeo
from support._proc import CommandError
from support.haproxy import HAProxy, servers_by_backend
from support.tcp_relay import TcpRelay
from support.wait import free_port, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, str]:
    layout = tmp_path_factory.mktemp("layout")
    digest = oci.build_image(
        layout, "v1", layers=[{"data/stored.txt": b"in object storage\n"}, oci.random_layer(4096)]
    )
    return layout, digest


def push_and_pull(image, netloc: str, repo: str, tmp_path: Path) -> None:
    """Push the image, then pull it back whole; its digest must be the source's."""
    layout, digest = image
    skopeo.copy(f"oci:{layout}:v1", f"docker://{netloc}/{repo}", dest_tls_verify=False)
    assert skopeo.inspect_digest(f"docker://{netloc}/{repo}", tls_verify=False) == digest
    pulled = tmp_path / f"pulled-{secrets.token_hex(4)}"
    skopeo.copy(f"docker://{netloc}/{repo}", f"oci:{pulled}:v1", src_tls_verify=False)
    assert oci.layout_ref(pulled, "v1")


@pytest.mark.parametrize(
    ("options", "scheme"),
    [
        ({}, "AWS4-HMAC-SHA256 "),  # the default, as every established deployment signed
        ({"storage-s3-skip-v4-auth": True}, "AWS "),  # signature v2, when asked for
    ],
    ids=["default-v4", "skip-v4-auth"],
)
def test_s3_signature_on_the_wire(
    ctx, machine, port, swift, s3_wire, image, tmp_path, options, scheme
):
    config = swift.s3_charm_config(f"http://{s3_wire.netloc}", **options)
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    ready = testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    assert state.unit_status == ready, machine.log("docker-registry")
    push_and_pull(image, f"127.0.0.1:{port}", "s3/app:v1", tmp_path)
    signatures = s3_wire.authorizations()
    assert signatures
    assert all(value.startswith(scheme) for value in signatures), signatures[:3]
    stored = swift.objects(str(config["storage-s3-bucket"]))
    assert any(name.startswith("docker/registry/v2/repositories/s3/app/") for name in stored)


def test_swift_push_and_pull(ctx, machine, port, swift, image, tmp_path):
    container = f"registry-{secrets.token_hex(4)}"
    config = {
        "storage-swift-authurl": swift.auth_url,
        "storage-swift-username": swift.username,
        "storage-swift-password": swift.password,
        "storage-swift-container": container,
    }
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    ready = testing.ActiveStatus(f"Ready at 127.0.0.1:{port} (http).")
    assert state.unit_status == ready, machine.log("docker-registry")
    push_and_pull(image, f"127.0.0.1:{port}", "swift/app:v1", tmp_path)
    # The registry created its container and keeps the images there, not on the unit.
    stored = swift.objects(container)
    assert any(
        name.startswith("files/docker/registry/v2/repositories/swift/app/") for name in stored
    )
    assert not (machine.root / "srv/registry/docker").exists()


def test_three_units_on_s3_all_active_behind_haproxy(swift, s3_wire, image, tmp_path):
    """Shared storage: every unit an active server; an image pushed through one pulls through each.

    The units are on one loopback, each registry on its own port; haproxy
    reaches unit N at its own address on the leader's port, which a relay
    passes to that unit's registry, as the network between machines would.
    """
    config = swift.s3_charm_config(f"http://{s3_wire.netloc}")
    ports = [free_port() for _ in range(3)]
    units = [0, 1, 2]
    stats = tmp_path / "stats.sock"
    with contextlib.ExitStack() as stack:
        databags = {}
        for n in units:
            machine = stack.enter_context(LocalMachine.temporary())
            ctx = charm_context(machine, unit_id=n)
            state = app_unit_state(
                n,
                ports[n],
                leader=n == 0,
                units=units,
                config=config,
            )
            proxy = state.get_relations("website")[0]
            state = ctx.run(ctx.on.relation_changed(proxy, remote_unit=0), state)
            ready = testing.ActiveStatus(f"Ready at {PROXY_ADDRESS}:{ports[n]} (http, proxied).")
            assert state.unit_status == ready, machine.log("docker-registry")
            databags[f"docker-registry/{n}"] = state.get_relations("website")[0].local_unit_data
            stack.enter_context(
                TcpRelay(("127.0.0.1", ports[n]), host=website_address(n), port=ports[0])
            )
        services = haproxy_charm.services(databags)
        assert services is not None
        cfg = haproxy_charm.haproxy_cfg(services, bind_host=PROXY_ADDRESS, stats_socket=str(stats))
        stack.enter_context(HAProxy(cfg, wait_ports=[ports[0]], host=PROXY_ADDRESS))

        def all_up() -> list[dict[str, str]]:
            servers = servers_by_backend(stats)["docker-registry"]
            return servers if all(s["status"] == "UP" for s in servers) else []

        servers = wait_for(all_up, timeout=30, what="haproxy to see every unit UP")
        assert [(s["svname"], s["bck"]) for s in servers] == [
            ("docker-registry-0", "0"),
            ("docker-registry-1", "0"),
            ("docker-registry-2", "0"),
        ]
        push_and_pull(image, f"127.0.0.1:{ports[1]}", "shared/app:v1", tmp_path)
        for netloc in [
            f"127.0.0.1:{ports[0]}",
            f"127.0.0.1:{ports[2]}",
            f"{PROXY_ADDRESS}:{ports[0]}",
        ]:
            pulled = tmp_path / f"pulled-{netloc}"
            skopeo.copy(
                f"docker://{netloc}/shared/app:v1", f"oci:{pulled}:v1", src_tls_verify=False
            )
            assert (
                skopeo.inspect_digest(f"docker://{netloc}/shared/app:v1", tls_verify=False)
                == image[1]
            )


def test_three_units_on_s3_share_each_relations_pull_credential(swift, s3_wire, image, tmp_path):
    """Every unit publishes and admits the credential the leader made for the relation."""
    config = {
        **swift.s3_charm_config(f"http://{s3_wire.netloc}"),
        "auth-basic-password": "admin-pw",
    }
    ports = [free_port() for _ in range(3)]
    relation = testing.Relation("docker-registry", remote_app_name="containerd")
    shared: dict[str, str] = {}
    credential_secrets: list[testing.Secret] = []
    published = []
    with contextlib.ExitStack() as stack:
        for n in (0, 1, 2):
            machine = stack.enter_context(LocalMachine.temporary())
            ctx = charm_context(machine, unit_id=n)
            state = app_unit_state(n, ports[n], leader=n == 0, units=[0, 1, 2], config=config)
            peer = state.get_relations("peer")[0]
            peer = dataclasses.replace(peer, local_app_data={**peer.local_app_data, **shared})
            state = dataclasses.replace(
                with_relation(with_relation(state, peer), relation),
                secrets=[*state.secrets, *credential_secrets],
            )
            state = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
            assert state.unit_status.name == "active", machine.log("docker-registry")
            if n == 0:  # what the leader shared: followers see it on the peer relation
                shared = dict(state.get_relation(peer.id).local_app_data)
                credential_secrets = [
                    dataclasses.replace(s, owner=None)
                    for s in state.secrets
                    if s.label and s.label.startswith("docker-registry-")
                ]
            bag = state.get_relation(relation.id).local_unit_data
            published.append((json.loads(bag["basic_user"]), json.loads(bag["basic_password"])))
        assert published[0] == published[1] == published[2]
        node = f"{published[0][0]}:{published[0][1]}"
        layout, digest = image
        skopeo.copy(f"oci:{layout}:v1", f"docker://127.0.0.1:{ports[1]}/shared/app:v1",
                    dest_tls_verify=False, dest_creds="admin:admin-pw")  # fmt: skip
        for port in ports:
            ref = f"docker://127.0.0.1:{port}/shared/app:v1"
            assert skopeo.inspect_digest(ref, tls_verify=False, creds=node) == digest
        with pytest.raises(CommandError, match=r"403|denied"):
            skopeo.copy(f"oci:{layout}:v1", f"docker://127.0.0.1:{ports[2]}/shared/app:v2",
                        dest_tls_verify=False, dest_creds=node)  # fmt: skip
