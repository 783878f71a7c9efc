"""What an attacker or a careless operator types: hypothesis strategies for every input.

Values mix plausible pieces (hosts, URLs, paths, PEM blobs) with the
characters that break formats: newlines, quotes, `$`, `%`, NUL, characters
beyond the Basic Multilingual Plane.
"""

from __future__ import annotations

import base64
import json

import yaml
from hypothesis import strategies as st

from charm_context import PROJECT
from support import pki

CONFIG_OPTIONS: dict[str, dict] = yaml.safe_load((PROJECT / "config.yaml").read_text())["options"]

BREAKERS = [
    "\n", "\r", "\t", "\x00", "\x07", "\x7f", "\x85", "\u2028", "\ufeff", " ", '"', "'",
    "\\", "$", "`", "%", "%zz", "%41", "#", ":", "@", "/", "..", "{{", "}}", "[", "]", "*",
    "&", "!", "\U0001f680", "é", "ExecStartPre=+/bin/sh -c id", "\nBogus=1", "\n- x",
]  # fmt: skip
PLAIN = [
    "a", "admin", "registry", "docker.io", "127.0.0.1", "::1", "[::1]", "localhost", "5000",
    "443", "http://", "https://", "example.com", "/etc/ssl/x.crt", "secret:", "p4ss",
]  # fmt: skip

CA = pki.make_ca("fuzz-ca")
GOOD_CERT = pki.issue(CA, "127.0.0.1", ["127.0.0.1", "localhost"])
OTHER_CERT = pki.issue(pki.make_ca("fuzz-other"), "10.1.1.1", ["10.1.1.1"])


def b64(data: bytes | str) -> str:
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def pieces(*extra: str, max_size: int = 6) -> st.SearchStrategy[str]:
    """Strings glued from plausible pieces and format breakers."""
    return st.lists(st.sampled_from([*PLAIN, *BREAKERS, *extra]), max_size=max_size).map("".join)


hostile_text = st.one_of(st.text(max_size=30), pieces(), st.sampled_from(BREAKERS))

hosts = st.one_of(
    st.sampled_from(["127.0.0.1", "localhost", "registry.test", "[::1]", "10.0.0.1", "h"]),
    pieces(max_size=3),
)
ports = st.one_of(st.none(), st.integers(-1, 70000).map(str), pieces(max_size=2))
urls = st.builds(
    lambda scheme, user, host, port, path: (
        f"{scheme}{user}{host}{'' if port is None else ':' + port}{path}"
    ),
    st.sampled_from(["http://", "https://", "ftp://", "", "http:/", "HTTP://"]),
    st.one_of(st.just(""), pieces(max_size=3).map(lambda u: u + "@")),
    hosts,
    ports,
    st.one_of(st.just(""), st.just("/"), pieces(max_size=4).map(lambda p: "/" + p)),
)
paths = st.one_of(
    st.sampled_from(
        [
            "/etc/docker/registry/registry.crt",
            "/etc/docker/registry/config.yml",
            "/etc/docker/registry/htpasswd",
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/ssl",
            "/etc/docker/registry/ca.crt",
            "/srv/registry/x",
            "relative.crt",
            "/",
        ]
    ),
    pieces("/", "/etc/", ".crt", max_size=4).map(lambda p: "/" + p),
)
blobs = st.one_of(
    st.sampled_from(
        [
            b64(GOOD_CERT.cert_pem),
            b64(GOOD_CERT.key_pem),
            b64(CA.cert_pem),
            b64(OTHER_CERT.cert_pem),
            b64(OTHER_CERT.key_pem),
            b64(GOOD_CERT.cert_pem + CA.cert_pem),
            b64("-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n"),
        ]
    ),
    hostile_text.map(b64),
    hostile_text,
)
mirror_entries = st.one_of(
    urls,
    st.fixed_dictionaries(
        {"url": urls}, optional={"username": hostile_text, "password": hostile_text}
    ),
    hostile_text,
    st.integers(),
    st.lists(st.integers(), max_size=2),
)
mirror_hosts = st.one_of(
    st.sampled_from(["docker.io", "registry.k8s.io", "ghcr.io", "host:5000", "h:0"]),
    pieces(max_size=3),
)
cache_mirrors = st.one_of(
    st.dictionaries(mirror_hosts, mirror_entries, max_size=3).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True)
    ),
    st.dictionaries(mirror_hosts, mirror_entries, max_size=3).map(json.dumps),
    hostile_text,
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
)


def option_values(name: str) -> st.SearchStrategy[object]:
    """Values for config option `name`, of the type Juju would hand the charm."""
    spec = CONFIG_OPTIONS[name]
    if spec["type"] == "boolean":
        return st.booleans()
    if spec["type"] == "int":
        return st.one_of(st.integers(-(2**31), 2**31), st.integers(-2, 70000))
    default = spec.get("default", "")
    if name.endswith("-blob") or name == "auth-token-root-certs":
        return blobs
    if name.endswith("-path"):
        return paths
    if name == "cache-mirrors":
        return cache_mirrors
    if name.endswith(("url", "-host", "-proxy", "endpoint", "realm")):
        return st.one_of(urls, hostile_text)
    return st.one_of(st.just(default), hostile_text, st.sampled_from(PLAIN))


def config_changes(names: list[str] | None = None, max_size: int = 4) -> st.SearchStrategy[dict]:
    """A few options changed at once (more would make nearly every example invalid)."""
    names = names or sorted(CONFIG_OPTIONS)
    return st.lists(st.sampled_from(names), min_size=1, max_size=max_size, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: option_values(key) for key in keys})
    )


user_names = st.one_of(
    st.sampled_from(["ci", "alice", "bob", "team-a-ci", "admin", "juju-charm", "#c", "a b", ""]),
    hostile_text,
    st.integers(),
)
passwords = st.one_of(
    st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), min_size=1),
    hostile_text,
    st.integers(),
    st.just("x" * 73),
)
prefixes = st.one_of(
    st.sampled_from(["team-a/", "team-a", "a/b/", "a.b_c/d-e/", "/x/", "../", "A/", "a//b/"]),
    pieces("team-a", "/", "..", max_size=4),
)
user_entries = st.one_of(
    st.fixed_dictionaries(
        {"password": passwords, "role": st.sampled_from(["pull", "push", "admin"])},
        optional={"prefix": prefixes},
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "password": passwords,
            "role": st.one_of(st.sampled_from(["pull", "push", "admin", "root"]), hostile_text),
            "prefix": prefixes,
            "groups": hostile_text,
        },
    ),
    hostile_text,
)
good_names = st.sampled_from(["ci", "alice", "bob", "team-a-ci", "ü-ser", "x.y@z"])
likely_users = st.fixed_dictionaries(
    {
        "password": st.text(
            st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=40
        ),
        "role": st.sampled_from(["pull", "push", "admin"]),
    },
    optional={"prefix": st.sampled_from(["team-a/", "team-a", "a/b/", "a.b_c/d-e/"])},
)
likely_users_secrets = st.dictionaries(good_names, likely_users, min_size=1, max_size=4).map(
    lambda d: yaml.safe_dump(d, allow_unicode=True)
)
"""`auth-users` secrets most of which are accepted (a push user may get a prefix)."""
users_secrets = st.one_of(
    likely_users_secrets,
    st.dictionaries(user_names, user_entries, min_size=1, max_size=4).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True)
    ),
    hostile_text,
    st.sampled_from([3, 1100]).map(lambda depth: "[" * depth + "]" * depth),
)
"""The `users` key of an `auth-users` secret."""
