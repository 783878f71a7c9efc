"""Takes a unit over from the established charm, which ran the registry under Docker.

On `juju refresh` from that charm (and on install, if its leftovers are
there) its container still holds the registry's port, and its restart policy
brings it back at every boot; the image data it wrote belongs to root. See
the shared reference `established-charm.md` for what such a unit holds.
"""

from __future__ import annotations

import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

import yaml

from state.plan import CONFIG_PATH, DATA_DIR
from workload.machine import Machine
from workload.registry import SERVICE_USER

logger = logging.getLogger(__name__)

OUR_HEADER = "# Managed by the docker-registry charm"


@dataclass(frozen=True)
class Takeover:
    """What the established charm left that the charm must keep."""

    container_removed: bool
    client_auth: bool
    """Its registry required client certificates (`http.tls.clientcas`)."""


def take_over(machine: Machine, *, container: str, image: str) -> Takeover:
    """Remove the old container and hand its data to the service user.

    Reads the old registry config first: the charm's own config replaces it.
    """
    client_auth = _required_client_certificates(machine.root / CONFIG_PATH.lstrip("/"))
    removed = machine.remove_container(container, image)
    hand_over(machine)
    return Takeover(container_removed=removed, client_auth=client_auth)


def _required_client_certificates(config_path: Path) -> bool:
    """Whether a registry config the charm did not write asks for client certificates."""
    try:
        text = config_path.read_text()
        config = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    if text.startswith(OUR_HEADER) or not isinstance(config, dict):
        return False
    tls = (config.get("http") or {}).get("tls") or {}
    return isinstance(tls, dict) and bool(tls.get("clientcas"))


def hand_over(machine: Machine) -> None:
    """Give every file in the data folder to the service user (the old registry ran as root).

    Also for storage Juju attaches there, which may hold another unit's data.
    """
    data_dir = machine.root / DATA_DIR.lstrip("/")
    try:
        user = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return
    if not data_dir.is_dir():
        return
    owner = (user.pw_uid, user.pw_gid)
    handed = 0
    for folder, _, files in os.walk(data_dir):
        for path in (folder, *(os.path.join(folder, name) for name in files)):
            stat = os.lstat(path)
            if (stat.st_uid, stat.st_gid) != owner:
                os.lchown(path, *owner)
                handed += 1
    if handed:
        logger.info("handed %d files under %s to %s", handed, data_dir, SERVICE_USER)
