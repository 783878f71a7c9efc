"""The `website` endpoint (interface `http`): haproxy's `reverseproxy` in front of us.

Every unit publishes its address and port as raw strings; the leader also
publishes a `services` YAML stanza in the format the haproxy charm parses
(the classic charm's parser, kept by the current operator). With filesystem
storage each unit holds different images, so the oldest unit is the one
active server and the others are backups; with S3 or Swift all are active.
"""

from __future__ import annotations

from collections.abc import Sequence

import ops
import yaml

from relations import databag
from relations.peer import UnitAddress

ENDPOINT = "website"
SERVER_CHECKS = "check inter 2000 rise 2 fall 5 maxconn 4096"
# When the registry serves TLS itself, haproxy passes the TLS stream through
# (TCP mode) and checks each server with a TLS handshake. (The established
# charm asked haproxy to re-encrypt towards the servers, which breaks the
# pass-through; the handshake check is what its options were for.)
TLS_SERVER_CHECKS = f"{SERVER_CHECKS} check-ssl verify none"


def proxy_address(charm: ops.CharmBase) -> str | None:
    """The address of the proxy in front of us: a remote unit's ingress address."""
    for relation in charm.model.relations[ENDPOINT]:
        if not relation.active:
            continue
        for unit in sorted(relation.units, key=lambda unit: unit.name):
            data = relation.data[unit]
            address = data.get("ingress-address") or data.get("private-address")
            if address:
                return address
    return None


def services_stanza(
    service_name: str,
    port: int,
    units: Sequence[UnitAddress],
    *,
    tls: bool,
    shared_storage: bool,
) -> str:
    """The `services` YAML for the haproxy charm; `units` oldest first."""
    checks = TLS_SERVER_CHECKS if tls else SERVER_CHECKS
    backup = "" if shared_storage else " backup"
    servers = [
        [unit.name.replace("/", "-"), unit.address, port, checks if i == 0 else checks + backup]
        for i, unit in enumerate(units)
    ]
    service_options = (
        ["mode tcp", "balance leastconn"]
        if tls
        else ["mode http", "balance leastconn", "option httpchk GET / HTTP/1.0"]
    )
    service = {
        "service_name": service_name,
        "service_host": "0.0.0.0",  # noqa: S104 - haproxy listens on all its addresses
        "service_port": port,
        "service_options": service_options,
        # Units that publish no stanza are added by haproxy with these options:
        # keep them backups too.
        "server_options": checks + backup,
        "servers": servers,
    }
    return yaml.safe_dump([service], sort_keys=False, default_flow_style=None)


def publish(
    charm: ops.CharmBase,
    *,
    own: UnitAddress,
    port: int,
    units: Sequence[UnitAddress],
    tls: bool,
    shared_storage: bool,
) -> None:
    """Write our address, and on the leader the services stanza, to every website relation."""
    stanza = services_stanza(charm.app.name, port, units, tls=tls, shared_storage=shared_storage)
    for relation in charm.model.relations[ENDPOINT]:
        if not relation.active:
            continue
        wanted = {"hostname": own.address, "private-address": own.address, "port": str(port)}
        if charm.unit.is_leader():
            wanted["services"] = stanza
        ours = relation.data[charm.unit]
        databag.update(ours, wanted)
        if not charm.unit.is_leader() and "services" in ours:
            del ours["services"]
