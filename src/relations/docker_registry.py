"""The `docker-registry` endpoint: tells container runtimes how to reach us.

Consumers are the containerd and docker subordinates of Charmed Kubernetes,
reactive charms that JSON-decode every value of our unit databag (the
`to_publish` view) and merge the databags of all our units. So every value is
JSON-encoded (`null` where absent) and every unit publishes the same values.

Each relation gets a pull-only credential of its own (`basic_user`,
`basic_password`), never the operator's admin. The leader makes it, keeps
it in an application-owned Juju secret and shares the secret's id in the
peer application databag, so every unit can read it and publish the same;
it removes the secret when the relation goes. A unit that cannot read the
credential yet leaves the two keys as they were.
"""

from __future__ import annotations

import contextlib
import json
import secrets

import ops

from relations import databag
from relations import peer as peer_relation
from state.access import RESERVED_PREFIX, RelationCredential
from state.plan import RegistryPlan

ENDPOINT = "docker-registry"
CREDENTIAL_KEYS = ("basic_user", "basic_password")


def secret_label(relation_id: int) -> str:
    """The label of a relation's credential secret (and its key in the peer app databag)."""
    return f"{ENDPOINT}-{relation_id}-credential"


def credentials(charm: ops.CharmBase) -> dict[int, RelationCredential]:
    """The pull-only credential of each active relation that has one (the leader makes them).

    The leader also removes the secrets of relations that are gone.
    """
    active = {r.id: r for r in charm.model.relations[ENDPOINT] if r.active}
    peer = charm.model.get_relation(peer_relation.ENDPOINT)
    shared = peer.data[charm.app] if peer is not None else None
    found: dict[int, RelationCredential] = {}
    if charm.unit.is_leader():
        for relation_id, relation in active.items():
            found[relation_id] = _own_credential(charm, relation, shared)
        if shared is not None:
            for key in [k for k in shared if k.startswith(f"{ENDPOINT}-")]:
                if key not in {secret_label(i) for i in active}:
                    _remove_secret(charm, shared[key])
                    del shared[key]
        return found
    for relation_id in active:
        secret_id = shared.get(secret_label(relation_id)) if shared is not None else None
        if not secret_id:
            continue
        try:
            content = charm.model.get_secret(id=secret_id).get_content(refresh=True)
            found[relation_id] = RelationCredential(content["username"], content["password"])
        except (ops.SecretNotFoundError, ops.ModelError, KeyError):
            continue
    return found


def _own_credential(
    charm: ops.CharmBase, relation: ops.Relation, shared: ops.RelationDataContent | None
) -> RelationCredential:
    """The leader's credential for `relation`, made (and shared) the first time."""
    label = secret_label(relation.id)
    try:
        secret = charm.model.get_secret(label=label)
    except ops.SecretNotFoundError:
        remote = relation.app.name if relation.app else "consumer"
        secret = charm.app.add_secret(
            {
                "username": f"{RESERVED_PREFIX}{remote}-{relation.id}",
                "password": secrets.token_urlsafe(24),
            },
            label=label,
            description=f"pull-only credential of {ENDPOINT} relation {relation.id}",
        )
    if shared is not None:
        secret_id = secret.id or secret.get_info().id
        if shared.get(label) != secret_id:
            shared[label] = secret_id
    content = secret.get_content()
    return RelationCredential(content["username"], content["password"])


def _remove_secret(charm: ops.CharmBase, secret_id: str) -> None:
    """Revoke a gone relation's credential for good (its users are already out of haproxy)."""
    with contextlib.suppress(ops.SecretNotFoundError, ops.ModelError):
        charm.model.get_secret(id=secret_id).remove_all_revisions()


def client_settings(
    plan: RegistryPlan, credential: RelationCredential | None
) -> dict[str, str | None]:
    """What a client needs: address, its own credential and the CA to trust."""
    return {
        "registry_netloc": plan.netloc,
        "registry_url": plan.url,
        "basic_user": credential.user if credential else None,
        "basic_password": credential.password if credential else None,
        "tls_ca": plan.ca_pem,
    }


def publish(
    charm: ops.CharmBase, plan: RegistryPlan, relation_credentials: dict[int, RelationCredential]
) -> None:
    """Write the client settings to every docker-registry relation, changed keys only.

    Without access control the credential keys are null. With it, a relation
    whose credential this unit cannot read yet keeps what it had (during a
    refresh: the admin credential, still valid, until the new one is known).
    """
    for relation in charm.model.relations[ENDPOINT]:
        if not relation.active:
            continue
        credential = relation_credentials.get(relation.id) if plan.access else None
        settings = client_settings(plan, credential)
        if plan.access is not None and credential is None:
            settings = {k: v for k, v in settings.items() if k not in CREDENTIAL_KEYS}
        encoded = {key: json.dumps(value, sort_keys=True) for key, value in settings.items()}
        databag.update(relation.data[charm.unit], encoded)
