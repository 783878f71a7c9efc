"""The `website` endpoint (interface `http`): haproxy's `reverseproxy` in front of us.

Only the leader publishes, as raw strings: its address, the port and a
`services` YAML stanza listing every unit, in the format the haproxy charms
parse (the classic charm's parser, kept by the current operator). The other
units publish nothing: the haproxy charms add a unit that publishes a `port`
without a stanza as one more server, and when no unit publishes a stanza they
serve every such unit on a default service on port 80. With filesystem
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


# What the leader publishes; a follower clears them (units refreshed from
# revisions where every unit published its address and port).
LEADER_KEYS = ("hostname", "port", "services")


def proxy_addresses(charm: ops.CharmBase) -> list[str]:
    """Every haproxy unit's ingress address, lowest unit number first.

    Clients may reach the registry through any of them; the first one is
    the address every unit tells clients, the same on every unit.
    """
    addresses: list[str] = []
    for relation in charm.model.relations[ENDPOINT]:
        if not relation.active:
            continue
        for unit in sorted(relation.units, key=unit_number):
            data = relation.data[unit]
            address = data.get("ingress-address") or data.get("private-address")
            if address and address not in addresses:
                addresses.append(address)
    return addresses


def unit_number(unit: ops.Unit) -> int:
    """A unit's number, so that haproxy/10 sorts after haproxy/9."""
    return int(unit.name.rpartition("/")[2])


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
        # haproxy gives these to a unit that publishes a port but no stanza:
        # only a unit still on an older revision does (during a refresh).
        "server_options": checks + backup,
        "servers": servers,
    }
    return yaml.safe_dump([service], sort_keys=False, default_flow_style=None)


def publish(
    charm: ops.CharmBase,
    *,
    port: int,
    units: Sequence[UnitAddress],
    tls: bool,
    shared_storage: bool,
) -> None:
    """The leader writes its address, the port and the stanza; the others clear theirs.

    `units` are every unit with its `website` address, oldest first.
    """
    for relation in charm.model.relations[ENDPOINT]:
        if not relation.active:
            continue
        ours = relation.data[charm.unit]
        if not charm.unit.is_leader():
            for key in LEADER_KEYS:
                if key in ours:
                    del ours[key]
            continue
        own = next(unit.address for unit in units if unit.name == charm.unit.name)
        stanza = services_stanza(
            charm.app.name, port, units, tls=tls, shared_storage=shared_storage
        )
        databag.update(
            ours,
            {"hostname": own, "private-address": own, "port": str(port), "services": stanza},
        )
