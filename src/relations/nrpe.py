"""The `nrpe-external-master` endpoint: the `nrpe` subordinate on this machine.

The nrpe unit sends `nagios_host_context` and `nagios_hostname` in its unit
databag. We write the check files ourselves (`workload/nagios.py`) and then
set `timestamp` (an ISO date) in our unit databag, which tells the
subordinate to read them again: the established charm's protocol.
"""

from __future__ import annotations

import datetime

import ops

ENDPOINT = "nrpe-external-master"
TIMESTAMP_KEY = "timestamp"


def related(charm: ops.CharmBase) -> ops.Relation | None:
    """The relation to the nrpe subordinate, unless there is none or it is going."""
    relation = charm.model.get_relation(ENDPOINT)
    return relation if relation is not None and relation.active else None


def remote_names(relation: ops.Relation) -> tuple[str | None, str | None]:
    """The nrpe unit's `nagios_host_context` and `nagios_hostname`, where it sent them."""
    for unit in relation.units:
        data = relation.data[unit]
        context, hostname = data.get("nagios_host_context"), data.get("nagios_hostname")
        if context or hostname:
            return context or None, hostname or None
    return None, None


def announce(charm: ops.CharmBase, relation: ops.Relation) -> None:
    """Tell the nrpe unit that the check files changed."""
    now = datetime.datetime.now(datetime.timezone.utc)
    relation.data[charm.unit][TIMESTAMP_KEY] = now.isoformat()
