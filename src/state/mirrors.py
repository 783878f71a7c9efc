"""The `cache-mirrors` option: several upstream registries mirrored by one unit.

The value is a YAML mapping from the upstream host, as it appears in image
references, to the upstream's URL, or to a mapping with `url` and optional
`username`/`password`::

    docker.io: https://registry-1.docker.io
    registry.k8s.io: https://registry.k8s.io
    ghcr.io: {url: https://ghcr.io, username: bot, password: token}

Problems name the upstream host but never echo values, which may hold
credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from state.settings import Upstream, is_secret_uri, load_yaml_option, secret_value, url_problem

OPTION = "cache-mirrors"
HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?\Z")
"""Anchored with \\Z: `$` would let a trailing newline through into haproxy.cfg."""
KEYS = ("url", "username", "password")
EXAMPLE = "e.g. 'docker.io: https://registry-1.docker.io'"


@dataclass(frozen=True)
class Mirror:
    """One upstream registry served under `/v2/<host>/` on the registry's endpoint."""

    host: str
    """The upstream's host as clients name it in images, e.g. docker.io."""
    upstream: Upstream


def parse_mirrors(
    value: str, secrets: Mapping[str, Mapping[str, str] | None] | None = None
) -> tuple[tuple[Mirror, ...], list[tuple[str, str]]]:
    """The mirrors `value` lists, and the problems found (empty when it is valid).

    A `password` may be a Juju secret's URI; `secrets` holds the content of
    those the charm could read.
    """
    if not value.strip():
        return (), []
    entries, problems = load_yaml_option(OPTION, value)
    if problems:
        return (), problems
    if not isinstance(entries, dict) or not entries:
        return (), [(OPTION, f"must map upstream hosts to their URLs, {EXAMPLE}")]
    mirrors: list[Mirror] = []
    for host, entry in entries.items():
        mirror, why = _parse_entry(host, entry, secrets or {})
        if mirror is None:
            problems.append((OPTION, why))
        else:
            mirrors.append(mirror)
    return tuple(sorted(mirrors, key=lambda m: m.host)), problems


def _parse_entry(
    host: object, entry: object, secrets: Mapping[str, Mapping[str, str] | None]
) -> tuple[Mirror | None, str]:
    """One `host: entry` pair as a Mirror, or None and why not."""
    if not isinstance(host, str) or not HOST.fullmatch(host) or _bad_port(host):
        return None, f"{str(host)[:64]!r} is not a registry host such as docker.io or host:5000"
    if isinstance(entry, str):
        entry = {"url": entry}
    if not isinstance(entry, dict):
        return None, f"{host}: give a URL or a mapping with url, username, password"
    unknown = sorted(str(key) for key in entry if key not in KEYS)
    if unknown:
        return None, f"{host}: unknown keys {', '.join(unknown)} (expected {', '.join(KEYS)})"
    url, username, password = (entry.get(key) or "" for key in KEYS)
    if not all(isinstance(v, str) for v in (url, username, password)):
        return None, f"{host}: url, username and password must be strings"
    if why := url_problem(url, credentials=False):
        return None, f"{host}: url {why}"
    if not username.isprintable() or not password.isprintable():
        return None, f"{host}: username and password must hold no control characters"
    if is_secret_uri(password):
        password = secret_value(secrets.get(password), "password")
        if password is None:
            return None, f"{host}: cannot read the password's secret: juju grant-secret it"
    if bool(username) != bool(password):
        return None, f"{host}: set username and password both or neither"
    return Mirror(host, Upstream(url, username, password)), ""


def _bad_port(host: str) -> bool:
    _, _, port = host.partition(":")
    return bool(port) and not 0 < int(port) < 65536
