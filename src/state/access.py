"""Decides who may do what with the registry, and where that is enforced.

Distribution's htpasswd gives every valid user every right, so rights are
enforced by the haproxy front (`state/front.py`, `templates/haproxy.cfg.j2`):
a `userlist`, the request's method and path, 401 for no or a wrong
credential, 403 for a user without the right. The registries behind it
listen on unix sockets only haproxy's group can reach, without auth of
their own. With only the operator's admin credential and nothing else to
tell apart, the registry keeps serving directly with its htpasswd file, as
before (no extra hop).

Credentials the charm generates (each relation's, the actions' own) carry
192 random bits: the front checks them by a SHA-256 digest of the request's
`Authorization` header, a string comparison, instead of bcrypt on every
request; bcrypt stays for the passwords people choose, which a fast hash
would expose to guessing if the file leaked. Most requests in a cluster are
nodes' manifest checks with a relation's credential.

Roles: `pull` (GET and HEAD), `push` (pull, then POST, PUT and PATCH: upload
and tag, optionally only under a repository prefix), `admin` (everything,
DELETE included).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from state.settings import BasicAuth

Role = Literal["pull", "push", "admin"]
ROLES: tuple[Role, ...] = ("pull", "push", "admin")
RESERVED_PREFIX = "juju-"
"""User names the charm makes for itself and for relations start with it."""
CHARM_USER = f"{RESERVED_PREFIX}charm"
"""The actions' own admin user: generated on each unit, never published."""
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PREFIX = re.compile(rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*/")
"""Repository path components as Distribution names them, ending with '/'."""


@dataclass(frozen=True)
class User:
    """Someone who may log in, and what they may do."""

    name: str
    password: str = field(repr=False)
    role: Role
    prefix: str = ""
    """For `push`: the repositories under this prefix (e.g. `team-a/`) only; empty: all."""
    generated: bool = False
    """Made by the charm (192 random bits): checked by `header_digest`, not by bcrypt."""

    @property
    def header_digest(self) -> str:
        """SHA-256 of the `Authorization` header a client sends for this user.

        Upper-case hex, as haproxy's `sha2(256),hex` prints it.
        """
        token = base64.b64encode(f"{self.name}:{self.password}".encode()).decode()
        return hashlib.sha256(f"Basic {token}".encode()).hexdigest().upper()


@dataclass(frozen=True)
class AccessPlan:
    """The users the front admits, by role, and whether anyone may pull."""

    users: tuple[User, ...]
    anonymous_pull: bool = False
    enforced_by_front: bool = True
    """False: the registry alone, with the admin in its htpasswd file."""

    def names(self, role: Role, prefix: str = "") -> tuple[str, ...]:
        """The users of `role` (for `push`, with exactly `prefix`)."""
        return tuple(
            u.name for u in self.users if u.role == role and (role != "push" or u.prefix == prefix)
        )

    @property
    def push_prefixes(self) -> tuple[str, ...]:
        """The repository prefixes push users are scoped to, each once, in order."""
        return tuple(dict.fromkeys(u.prefix for u in self.users if u.role == "push" and u.prefix))

    @property
    def action_credential(self) -> BasicAuth:
        """What the charm's actions log in with: an admin that is never published."""
        admin = next(u for u in self.users if u.role == "admin")
        if self.enforced_by_front:
            admin = next(u for u in self.users if u.name == CHARM_USER)
        return BasicAuth(admin.name, admin.password)


@dataclass(frozen=True)
class RelationCredential:
    """A consumer's pull-only credential, one per `docker-registry` relation."""

    user: str
    password: str = field(repr=False)


def plan_access(
    admin: BasicAuth | None,
    named_users: tuple[User, ...],
    relations: Mapping[int, RelationCredential],
    charm_password: str,
    *,
    anonymous_pull: bool = False,
    front_running: bool = False,
) -> AccessPlan | None:
    """Who may do what; None: no access control (an open registry, or token auth).

    `front_running` (haproxy runs for mirrors): the front enforces whatever
    the users are, since the registries behind it have no auth of their own.
    """
    if admin is None and not named_users and not anonymous_pull:
        return None
    users = [User(admin.user, admin.password, "admin")] if admin else []
    users += named_users
    users += [
        User(c.user, c.password, "pull", generated=True) for _, c in sorted(relations.items())
    ]
    enforced = front_running or anonymous_pull or len(users) != 1
    if enforced:
        users.append(User(CHARM_USER, charm_password, "admin", generated=True))
    return AccessPlan(tuple(users), anonymous_pull=anonymous_pull, enforced_by_front=enforced)
