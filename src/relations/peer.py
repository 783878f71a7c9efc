"""The `peer` endpoint (interface `peer-discovery`): what units share.

Units learn each other's addresses from the relation (Juju publishes them).
Juju publishes the address on the peer endpoint's own binding, so each unit
also shares its `website` binding's address, which the leader lists in the
haproxy stanza.
Registries behind one load balancer must sign upload state with the same
`http.secret`. The leader keeps it in a Juju secret and publishes the
secret's id in the peer application databag, so that the other units get a
relation-changed event, and a grant-free read, when it appears.

Maintenance on shared storage (see `state/maintenance.py`): the leader
writes the lease as JSON under `maintenance-lease` in the application
databag ({"run", "holder", "expires"}); each unit writes the run it serves
read-only for under `maintenance-ack` in its unit databag, and removes it
when the lease is gone.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from dataclasses import dataclass

import ops

from relations import databag
from state.maintenance import Lease
from state.settings import is_host

ENDPOINT = "peer"
SECRET_LABEL = "http-secret"  # noqa: S105 - a name, not a secret
SECRET_ID_KEY = "http-secret-id"  # noqa: S105 - a name, not a secret
WEBSITE_ADDRESS_KEY = "website-address"
LEASE_KEY = "maintenance-lease"
RUN_ID = re.compile(r"[0-9a-f]{1,32}")
UNIT_NAME = re.compile(r"[a-z][a-z0-9-]*/[0-9]+")
ACK_KEY = "maintenance-ack"


def http_secret(charm: ops.CharmBase) -> str | None:
    """The registry's shared http secret; None until the leader has made it."""
    relation = charm.model.get_relation(ENDPOINT)
    if charm.unit.is_leader():
        try:
            secret = charm.model.get_secret(label=SECRET_LABEL)
        except ops.SecretNotFoundError:
            secret = charm.app.add_secret(
                {"http-secret": secrets.token_urlsafe(32)}, label=SECRET_LABEL
            )
        if relation is not None:
            secret_id = secret.id or secret.get_info().id
            if relation.data[charm.app].get(SECRET_ID_KEY) != secret_id:
                relation.data[charm.app][SECRET_ID_KEY] = secret_id
        return secret.get_content()["http-secret"]
    if relation is None or not (secret_id := relation.data[charm.app].get(SECRET_ID_KEY)):
        return None
    try:
        return charm.model.get_secret(id=secret_id).get_content()["http-secret"]
    except (ops.SecretNotFoundError, ops.ModelError, KeyError, ValueError):
        return None


@dataclass(frozen=True)
class UnitAddress:
    """A unit of this application and the address its registry listens on."""

    name: str
    address: str

    @property
    def number(self) -> int:
        """The unit's number: the lower, the older."""
        return int(self.name.rpartition("/")[2])


def share_website_address(charm: ops.CharmBase, address: str) -> None:
    """Tell the other units this unit's `website` address (written only when it changed)."""
    relation = charm.model.get_relation(ENDPOINT)
    if relation is not None:
        databag.update(relation.data[charm.unit], {WEBSITE_ADDRESS_KEY: address})


def unit_addresses(
    charm: ops.CharmBase, own_address: str, *, shared_key: str | None = None
) -> list[UnitAddress]:
    """This unit and the peers Juju has told us about, oldest first.

    With `shared_key`, a peer's address is the one it shared under that key
    (its ingress address on the peer relation until it has). A peer whose
    address is not an IP address or host name is left out.
    """
    units = [UnitAddress(charm.unit.name, own_address)]
    relation = charm.model.get_relation(ENDPOINT)
    if relation is not None:
        for unit in relation.units:
            data = relation.data[unit]
            shared = data.get(shared_key) if shared_key else None
            address = shared or data.get("ingress-address") or data.get("private-address")
            if address and is_host(address):
                units.append(UnitAddress(unit.name, address))
    return sorted(units, key=lambda unit: unit.number)


def maintenance_lease(charm: ops.CharmBase) -> Lease | None:
    """The lease the leader wrote, expired or not; None if there is none (or it is unreadable)."""
    relation = charm.model.get_relation(ENDPOINT)
    text = relation.data[charm.app].get(LEASE_KEY) if relation else None
    if not text:
        return None
    try:
        data = json.loads(text)
        lease = Lease(str(data["run"]), str(data["holder"]), float(data["expires"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    # The run names a systemd unit and the holder shows in the status: only our shapes.
    if not (RUN_ID.fullmatch(lease.run) and UNIT_NAME.fullmatch(lease.holder)):
        return None
    return lease


def hold_lease(charm: ops.CharmBase, lease: Lease | None) -> bool:
    """Write the lease (the leader's), or remove it with None; whether there is a peer relation."""
    relation = charm.model.get_relation(ENDPOINT)
    if relation is None:
        return False
    text = json.dumps(dataclasses.asdict(lease)) if lease else ""
    _set(relation.data[charm.app], LEASE_KEY, text)
    return True


def acknowledge(charm: ops.CharmBase, run: str) -> None:
    """Say this unit serves read-only for `run`; "" takes the word back."""
    relation = charm.model.get_relation(ENDPOINT)
    if relation is not None:
        _set(relation.data[charm.unit], ACK_KEY, run)


def acknowledged_here(charm: ops.CharmBase) -> str:
    """The run this unit last said it serves read-only for; "" for none."""
    relation = charm.model.get_relation(ENDPOINT)
    return relation.data[charm.unit].get(ACK_KEY, "") if relation else ""


def acknowledgements(charm: ops.CharmBase) -> dict[str, str]:
    """The run each other unit last said it serves read-only for ("" for none), by unit."""
    relation = charm.model.get_relation(ENDPOINT)
    if relation is None:
        return {}
    return {unit.name: relation.data[unit].get(ACK_KEY, "") for unit in relation.units}


def _set(bag: ops.RelationDataContent, key: str, value: str) -> None:
    """Write `value`, or remove the key for ""; nothing when it is already so."""
    if value:
        databag.update(bag, {key: value})
    elif key in bag:
        del bag[key]
