"""The validated pieces the desired state is built from.

Config (`config.py`) and the `cache-mirrors` option (`mirrors.py`) both
produce them; the plan consumes them. They hold no logic beyond what they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit


@dataclass(frozen=True)
class BasicAuth:
    """htpasswd credentials clients log in with."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class TokenAuth:
    """Delegated token auth: a token server issues bearer tokens."""

    realm: str
    service: str
    issuer: str
    root_certs_pem: str


@dataclass(frozen=True)
class Upstream:
    """A registry this one caches (pull-through), with optional credentials."""

    url: str
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Storage:
    """The one storage driver and its parameters, as the registry names them."""

    driver: Literal["filesystem", "s3", "swift"]
    params: dict[str, str | int | bool] = field(default_factory=dict, repr=False)

    @property
    def shared(self) -> bool:
        """Whether all units see the same images (object storage)."""
        return self.driver != "filesystem"


def is_absolute_url(value: str, schemes: tuple[str, ...] = ("http", "https")) -> bool:
    """Whether `value` is an absolute URL with one of `schemes` and a host."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname)
