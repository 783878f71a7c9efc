"""The `docker-registry` endpoint: tells container runtimes how to reach us.

Consumers are the containerd and docker subordinates of Charmed Kubernetes,
reactive charms that JSON-decode every value of our unit databag (the
`to_publish` view) and merge the databags of all our units. So every value is
JSON-encoded (`null` where absent) and every unit publishes the same values.
"""

from __future__ import annotations

import json

import ops

from relations import databag
from state.plan import RegistryPlan

ENDPOINT = "docker-registry"


def client_settings(plan: RegistryPlan) -> dict[str, str | None]:
    """What a client needs: address, credentials and the CA to trust."""
    auth = plan.basic_auth
    return {
        "registry_netloc": plan.netloc,
        "registry_url": plan.url,
        "basic_user": auth.user if auth else None,
        "basic_password": auth.password if auth else None,
        "tls_ca": plan.ca_pem,
    }


def publish(charm: ops.CharmBase, plan: RegistryPlan) -> None:
    """Write the client settings to every docker-registry relation, changed keys only."""
    encoded = {
        key: json.dumps(value, sort_keys=True) for key, value in client_settings(plan).items()
    }
    for relation in charm.model.relations[ENDPOINT]:
        if not relation.active:
            continue
        databag.update(relation.data[charm.unit], encoded)
