"""A small client for the registry's HTTP API (distribution v2), for the actions.

The charm talks to its own registry on loopback, whatever `http-host` says
(split DNS, an ingress on another port). `LocalAccess` says how: the address
to dial, the name to verify TLS against (one the registry's certificate
carries, so TLS is verified, not skipped), which CA to trust, and the
basic-auth credentials. `RegistryClient` lists the catalog and tags
(following pagination), resolves tags to manifest digests and deletes
manifests, over one keep-alive connection: a site's registry holds tens of
thousands of repositories, and a connection (a TLS handshake) per request
would double the time to list them. It uses http.client, which never reads
proxy variables: calls to our own registry never go through the model's proxy.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field

from state.plan import RegistryPlan
from state.settings import BasicAuth
from state.tls import load_certificates
from workload.client_identity import ClientIdentity, identity_for

LOOPBACK = "127.0.0.1"
TIMEOUT = 30.0
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry serves it: its digest, size and parsed JSON."""

    digest: str
    size: int
    content: dict = field(repr=False)

    def blobs(self) -> dict[str, int]:
        """The blobs it references (config and layers), digest -> size."""
        descriptors = [self.content.get("config"), *(self.content.get("layers") or [])]
        return {
            d["digest"]: int(d.get("size") or 0)
            for d in descriptors
            if isinstance(d, dict) and isinstance(d.get("digest"), str)
        }

    def children(self) -> list[str]:
        """The digests of the manifests an index (manifest list) names."""
        return [
            d["digest"]
            for d in self.content.get("manifests") or []
            if isinstance(d, dict) and isinstance(d.get("digest"), str)
        ]


class RegistryAPIError(Exception):
    """The registry answered with an error (or could not be reached)."""

    def __init__(self, message: str, status: int | None = None, code: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class LocalAccess:
    """How the charm reaches the registry on its own unit."""

    host: str
    """The name in image references and the one TLS verifies."""
    port: int
    tls: bool
    ca_pem: str | None = field(default=None, repr=False)
    credentials: BasicAuth | None = field(default=None, repr=False)
    client: ClientIdentity | None = None
    """The charm's client certificate, when the registry requires one (mutual TLS)."""
    address: str = LOOPBACK
    """The loopback address the registry listens on, which the Python client dials."""
    name_on_loopback: bool = False
    """`host` is a DNS name that programs dialling it (skopeo) must resolve to `address`."""

    @property
    def netloc(self) -> str:
        """host:port, bracketing IPv6 literals."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def loopback_address(listen_host: str) -> str:
    """Where this unit's registry answers on loopback: its own address if bound to one."""
    return listen_host if listen_host not in ("", "0.0.0.0", "::") else LOOPBACK  # noqa: S104


def local_access(plan: RegistryPlan, listen_host: str = "") -> LocalAccess:
    """How to reach the registry this unit runs, verifying its TLS certificate.

    The certificate names the addresses clients use, not necessarily
    127.0.0.1. Preferred are the loopback address and this unit's own
    address when the certificate names them (both reach this unit and need
    no name resolution), then a DNS name it carries, `http-host`'s first,
    which skopeo resolves to loopback in a private mount namespace (see
    `actions/push.py`): whether the unit can resolve it (split DNS) and
    where it points (an ingress on another port) do not matter. The address
    clients use is the last resort, for a certificate naming only that IP.
    """
    address = loopback_address(listen_host)
    if plan.tls is None:
        return LocalAccess(
            address, plan.port, tls=False, credentials=plan.action_credential, address=address
        )
    dns_names, addresses = certificate_names(plan.tls.cert_pem)
    client_host = urllib.parse.urlsplit(f"//{plan.netloc}").hostname or ""
    by_address = [a for a in (address, plan.unit_address) if a in addresses]
    by_name = [
        name
        for name in (client_host, "localhost", *sorted(dns_names))
        if name in dns_names and "*" not in name
    ]
    host = (by_address or by_name or [client_host or address])[0]
    return LocalAccess(
        host,
        plan.port,
        tls=True,
        # Without a CA, a self-signed server certificate is its own anchor.
        ca_pem=plan.tls.ca_pem or plan.tls.cert_pem,
        credentials=plan.action_credential,
        client=identity_for(plan.client_cas_path) if plan.client_cas_path else None,
        address=address,
        name_on_loopback=not by_address and bool(by_name),
    )


def certificate_names(cert_pem: str) -> tuple[set[str], set[str]]:
    """The DNS names and the IP addresses in a certificate's subjectAltName."""
    from cryptography import x509  # only for actions with TLS: hooks need not load it

    leaf = load_certificates(cert_pem)[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    addresses = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(san.get_values_for_type(x509.DNSName)), addresses


class _LoopbackHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to loopback that verifies the certificate for another host name.

    ssl matches `server_hostname` against the certificate's DNS and IP names.
    """

    def __init__(self, access: LocalAccess, context: ssl.SSLContext, timeout: float):
        super().__init__(access.address, access.port, timeout=timeout, context=context)
        self._tls_name = access.host
        self._ssl_context = context

    def connect(self) -> None:
        """Dial loopback; check the certificate against the name, not the address."""
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ssl_context.wrap_socket(sock, server_hostname=self._tls_name)


# Distribution walks its storage tree from the start for every catalog page,
# so listing costs pages x repositories: 1,000 a page keeps it near linear.
CATALOG_PAGE = 1000


class RegistryClient:
    """Calls to the registry API on this unit, reusing one connection."""

    def __init__(self, access: LocalAccess, timeout: float = TIMEOUT):
        self.access = access
        self.timeout = timeout
        self._open: http.client.HTTPConnection | None = None

    def close(self) -> None:
        """Close the kept-alive connection (the next request opens another)."""
        if self._open is not None:
            self._open.close()
            self._open = None

    def _connection(self) -> http.client.HTTPConnection:
        if not self.access.tls:
            return http.client.HTTPConnection(
                self.access.address, self.access.port, timeout=self.timeout
            )
        context = ssl.create_default_context(cadata=self.access.ca_pem)
        if self.access.client:
            context.load_cert_chain(self.access.client.cert_path, self.access.client.key_path)
        return _LoopbackHTTPSConnection(self.access, context, self.timeout)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request; returns status, headers and body, raising on errors (>= 400)."""
        headers = {"Host": self.access.netloc, **(headers or {})}
        if self.access.credentials:
            auth = self.access.credentials
            token = base64.b64encode(f"{auth.user}:{auth.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        reused = self._open is not None
        try:
            response, body = self._exchange(method, path, headers)
        except (OSError, http.client.HTTPException) as e:
            # The registry may close a kept-alive connection between requests
            # (idle timeout, restart): then once more on a new one.
            self.close()
            if not reused:
                raise RegistryAPIError(f"cannot reach the registry: {e}") from None
            try:
                response, body = self._exchange(method, path, headers)
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise RegistryAPIError(f"cannot reach the registry: {e}") from None
        if response.status >= 400:
            raise _api_error(method, path, response.status, body)
        return response.status, response.headers, body

    def _exchange(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send on the kept-alive connection (opening it if needed); read the whole answer."""
        if self._open is None:
            self._open = self._connection()
        self._open.request(method, path, headers=headers)
        response = self._open.getresponse()
        return response, response.read()

    def _paginated(self, path: str, key: str) -> list[str]:
        """Follow `Link: <...>; rel="next"` until the last page."""
        items: list[str] = []
        next_path: str | None = path
        while next_path:
            _, headers, body = self.request("GET", next_path)
            items.extend(json.loads(body or b"{}").get(key) or [])
            match = _NEXT_LINK.search(headers.get("Link", ""))
            next_path = _path_only(match.group(1)) if match else None
        return items

    def catalog(self, page_size: int = CATALOG_PAGE) -> list[str]:
        """Every repository, in the registry's (lexical) order."""
        return self._paginated(f"/v2/_catalog?n={page_size}", "repositories")

    def tags(self, repository: str, page_size: int = 1000) -> list[str]:
        """The repository's tags; empty when the repository does not exist."""
        try:
            return self._paginated(f"/v2/{repository}/tags/list?n={page_size}", "tags")
        except RegistryAPIError as e:
            if e.status == 404:
                return []
            raise

    def _manifest_request(
        self, method: str, repository: str, reference: str
    ) -> tuple[http.client.HTTPMessage, bytes] | None:
        """HEAD or GET a manifest in any of the types we know; None if absent."""
        try:
            _, headers, body = self.request(
                method,
                f"/v2/{repository}/manifests/{reference}",
                {"Accept": ", ".join(MANIFEST_TYPES)},
            )
        except RegistryAPIError as e:
            if e.status == 404:
                return None
            raise
        return headers, body

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest the tag (or digest) resolves to, as clients see it; None if absent."""
        answer = self._manifest_request("HEAD", repository, reference)
        return None if answer is None else answer[0].get("Docker-Content-Digest")

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest a tag or digest names, parsed; None if absent."""
        answer = self._manifest_request("GET", repository, reference)
        if answer is None:
            return None
        headers, body = answer
        digest = headers.get("Docker-Content-Digest") or (
            "sha256:" + hashlib.sha256(body).hexdigest()
        )
        try:
            content = json.loads(body)
        except ValueError:
            content = {}
        return Manifest(digest, len(body), content if isinstance(content, dict) else {})

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest (and so every tag pointing at it)."""
        self.request("DELETE", f"/v2/{repository}/manifests/{digest}")


def _path_only(link: str) -> str:
    """The path and query of a Link target (the registry may send an absolute URL)."""
    parts = urllib.parse.urlsplit(link)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _api_error(method: str, path: str, status: int, body: bytes) -> RegistryAPIError:
    """An error naming the registry's own code and message when it sent them."""
    code = message = ""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    if errors and isinstance(errors[0], dict):
        code = str(errors[0].get("code", ""))
        message = str(errors[0].get("message", ""))
    detail = f"{code}: {message}" if code else f"HTTP {status}"
    path_only = path.split("?", 1)[0]
    return RegistryAPIError(f"{method} {path_only}: {detail}", status=status, code=code)
