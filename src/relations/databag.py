"""Writing relation data without needless relation-changed events on the other side."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping


def update(databag: MutableMapping[str, str], values: Mapping[str, str]) -> None:
    """Set the keys whose values differ; Juju tells the remote side of each write."""
    for key, value in values.items():
        if databag.get(key) != value:
            databag[key] = value
