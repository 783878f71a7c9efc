"""A node as the containerd charm configures it, from our relation data and its options.

The behaviour reproduced here is what was measured of that charm (see
/work/shared/reference/relations.md, "What the containerd charm does with
it"), not its code:

- the docker-registry relation: each value JSON-decoded (raw string when it is
  not JSON); `registry_netloc` becomes a mirror of itself with a scheme-less
  endpoint; `basic_user`/`basic_password` (both non-null) the auth of
  `configs."<netloc>"`; `tls_ca` goes into the node's trust store, and
  `configs."<netloc>".tls` points at the node's own Kubernetes CA, certificate
  and key (presented as a client certificate);
- `custom_registries`: a JSON list of `host`, `url`, `username`, `password`,
  `ca_file`, `cert_file`, `key_file` (base64, written to files named after the
  host), `insecure_skip_verify`; `host` defaults to the url without scheme;
  each entry with a host becomes `mirrors."<host>"` with `endpoint = ["<url>"]`,
  its login and TLS `configs."<url>"` (the url as written); a `docker.io`
  entry is added first unless one is given; the relation's entry comes last;
- values are written into the TOML as they are, without escaping, so
  duplicated tables make containerd refuse to start, as on a node.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import pki

REGISTRY = 'plugins."io.containerd.grpc.v1.cri".registry'
DOCKER_IO = {"host": "docker.io", "url": "https://registry-1.docker.io"}


@dataclass
class NodeRegistry:
    """One registry as the charm keeps it before rendering."""

    url: str
    host: str
    username: str | None = None
    password: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure_skip_verify: bool | None = None


def decode(value: str | None) -> object:
    """A value of our databag as a reactive charm reads it: JSON, else the raw string."""
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


class ContainerdCharmNode:
    """The files and config.toml registry tables the containerd charm gives a node."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.config_dir = workdir / "etc-containerd"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.kubernetes_ca = pki.make_ca("kubernetes-ca")
        cert, key = pki.issue(self.kubernetes_ca, "node-0", ["node-0"])
        self.node_files = {
            "ca": self._write("kubernetes-ca.crt", self.kubernetes_ca.cert_pem),
            "cert": self._write("node.crt", cert),
            "key": self._write("node.key", key),
        }

    def _write(self, name: str, data: bytes) -> str:
        path = self.config_dir / name
        path.write_bytes(data)
        return str(path)

    def registries(
        self, *, custom_registries: str = "[]", relation: Mapping[str, str] | None = None
    ) -> tuple[list[NodeRegistry], bytes]:
        """The merged registry list, and the CA the relation put into the trust store."""
        registries = [self._custom(entry) for entry in json.loads(custom_registries)]
        if not any(r.host == "docker.io" for r in registries):
            registries.insert(0, self._custom(DOCKER_IO))
        trusted = b""
        netloc = decode((relation or {}).get("registry_netloc"))
        if relation is not None and isinstance(netloc, str):
            own = NodeRegistry(url=netloc, host=netloc)
            user, password = (
                decode(relation.get("basic_user")),
                decode(relation.get("basic_password")),
            )
            if user is not None and password is not None:
                own.username, own.password = str(user), str(password)
            ca = decode(relation.get("tls_ca"))
            if isinstance(ca, str):
                trusted = ca.encode()
                own.ca, own.cert, own.key = (self.node_files[k] for k in ("ca", "cert", "key"))
            registries.append(own)
        return registries, trusted

    def _custom(self, entry: Mapping[str, object]) -> NodeRegistry:
        url = str(entry["url"])
        host = entry.get("host")
        registry = NodeRegistry(
            url=url,
            host=str(host) if host is not None else url.rstrip("/").split("://", 1)[-1],
            username=_optional(entry.get("username")),
            password=_optional(entry.get("password")),
            insecure_skip_verify=bool(entry.get("insecure_skip_verify")) or None,
        )
        for field, suffix in (("ca_file", "ca"), ("cert_file", "cert"), ("key_file", "key")):
            content = entry.get(field)
            if content:
                path = self._write(f"{registry.host}.{suffix}", base64.b64decode(str(content)))
                setattr(registry, suffix, path)
        return registry


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


def registry_toml(registries: list[NodeRegistry]) -> str:
    """The CRI registry tables of the node's config.toml, as the charm writes them."""
    lines = [f"[{REGISTRY}]", f"  [{REGISTRY}.mirrors]"]
    for r in registries:
        if r.host:
            lines.append(f'    [{REGISTRY}.mirrors."{r.host}"]')
            if r.url:
                lines.append(f'      endpoint = ["{r.url}"]')
    lines.append(f"  [{REGISTRY}.configs]")
    for r in registries:
        if r.username and r.password:
            lines += [
                f'    [{REGISTRY}.configs."{r.url}".auth]',
                f'      username = "{r.username}"',
                f'      password = "{r.password}"',
            ]
    for r in registries:
        if r.ca or r.cert or r.key or r.insecure_skip_verify:
            lines += [
                f'    [{REGISTRY}.configs."{r.url}".tls]',
                f'      ca_file = "{r.ca or ""}"',
                f'      cert_file = "{r.cert or ""}"',
                f'      key_file = "{r.key or ""}"',
                f"      insecure_skip_verify = {'true' if r.insecure_skip_verify else 'false'}",
            ]
    return "\n".join(lines) + "\n"
