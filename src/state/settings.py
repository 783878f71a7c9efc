"""The validated pieces the desired state is built from.

Config (`config.py`) and the `cache-mirrors` option (`mirrors.py`) both
produce them; the plan consumes them. They hold no logic beyond what they are.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

CONFIG_PATH = "/etc/docker/registry/config.yml"
HTPASSWD_PATH = "/etc/docker/registry/htpasswd"
TOKEN_ROOT_CERTS_PATH = "/etc/docker/registry/token-root-certs.pem"  # noqa: S105 - a name, not a secret
ENVIRONMENT_PATH = "/etc/docker/registry/environment"
CLIENT_CAS_PATH = "/etc/docker/registry/client-cas.pem"
"""With mutual TLS: the CAs whose clients are admitted (the operator's, the charm's own)."""
CLIENT_IDENTITY_DIR = "/etc/docker/registry/charm-client"
"""The charm's own client certificate for mutual TLS (workload/client_identity.py)."""
DROPIN_PATH = "/etc/systemd/system/docker-registry.service.d/10-juju.conf"
DATA_DIR = "/srv/registry"


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


# RFC 3986 characters minus those no format we render a URL into can take
# unquoted (shell, systemd, haproxy): no quotes, backslash, `$` or backtick.
URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!&()*+,;=%]*")
HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
SECRET_URI = re.compile(r"secret:(?://[0-9a-f-]{36}/)?[0-9a-z]{20}")
"""A Juju secret's URI, as `juju add-secret` prints it."""


def url_problem(value: str, *, credentials: bool = True) -> str | None:
    """Why `value` is not an absolute http(s) URL that Go and every file we render can take.

    Stricter than Python's parser, which drops newlines and tabs and accepts
    what Go's `url.Parse` refuses (a space, a backslash, a stray `%`).
    """
    if not URL_CHARS.fullmatch(value):
        return "must be an absolute http(s) URL of printable ASCII without spaces or quotes"
    if re.search(r"%(?![0-9A-Fa-f]{2})", value):
        return "must be an absolute http(s) URL (a '%' starts a %XX escape)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "must be an absolute http(s) URL with a valid host and port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http(s) URL such as https://host:5000"
    if not is_host(parts.hostname) or port == 0:
        return "must be an absolute http(s) URL with a valid host and port"
    if not credentials and (parts.username is not None or parts.password is not None):
        return "must not hold credentials (put them in their own options)"
    return None


def is_absolute_url(value: str) -> bool:
    """Whether `value` is an absolute http(s) URL that Go and our files can take."""
    return url_problem(value) is None


def is_ip(value: str) -> bool:
    """Whether `value` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_host(value: str) -> bool:
    """Whether `value` is an IP address or an ASCII host name (no port)."""
    return is_ip(value) or (len(value) <= 253 and HOST_NAME.fullmatch(value) is not None)


def is_secret_uri(value: str) -> bool:
    """Whether an option's value names a Juju secret rather than holding the value."""
    return SECRET_URI.fullmatch(value) is not None


def secret_value(content: Mapping[str, str] | None, key: str) -> str | None:
    """The value a Juju secret gives for `key`: that key, or its only key; None if neither."""
    if not content:
        return None
    if key in content:
        return content[key]
    return next(iter(content.values())) if len(content) == 1 else None


METRICS_TEXTFILE_DIR = "/var/lib/docker-registry-charm/metrics"
"""`.prom` files the charm writes in its hooks; the textfile exporter serves them."""
