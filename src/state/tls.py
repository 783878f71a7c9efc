"""Checks TLS material before the registry is given it.

A certificate that does not parse, does not match its key or has expired
would only fail when the registry restarts; checking here lets the charm
refuse it and keep serving with what it had.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from state.settings import is_ip

GO_CURVES = ("secp256r1", "secp384r1", "secp521r1")
"""The named curves Go's TLS stack serves with (explicit parameters it cannot take)."""
EXPIRY_WARNING = datetime.timedelta(days=30)
Checked = Mapping[str, tuple[float, float, float, Sequence[str]]]
"""Fingerprints of material found good: when it is all valid (from, until), when the
certificate expires (POSIX times), and the names it carries.

A hook that sees such material again only compares dates: parsing it, and
importing cryptography, cost a hook 0.1 to 0.3 s (an RSA-4096 key).
"""
# The DER of the prime- and binary-field OIDs, found only in explicit EC
# parameters (a named curve is one OID). cryptography loads such keys; Go does not.
EXPLICIT_EC_FIELDS = (bytes.fromhex("06072a8648ce3d0101"), bytes.fromhex("06072a8648ce3d0102"))
PEM_BODY = re.compile(r"-----BEGIN [A-Z ]+-----(.*?)-----END [A-Z ]+-----", re.S)


class TLSMaterialError(ValueError):
    """TLS material that the registry must not be given; the message says why."""


@dataclass(frozen=True)
class ServerTLS:
    """A checked server certificate, its key, and the CA clients should trust."""

    cert_pem: str
    key_pem: str
    ca_pem: str | None = None
    not_after: datetime.datetime | None = None
    names: tuple[str, ...] = ()
    """The DNS names and IP addresses the certificate is valid for."""
    validity: tuple[float, float] = field(default=(0.0, 0.0), compare=False)
    """When the certificate and its CA are all valid: (from, until), POSIX times."""

    def names_host(self, host: str) -> bool:
        """Whether a client reaching `host` accepts this certificate (SANs, as Go checks)."""
        host = host.strip("[]").rstrip(".").lower()
        try:
            wanted = ipaddress.ip_address(host)
        except ValueError:
            return any(_dns_match(name, host) for name in self.names if not is_ip(name))
        return any(is_ip(name) and ipaddress.ip_address(name) == wanted for name in self.names)

    @property
    def fingerprint(self) -> str:
        """Names this material in `Checked`."""
        return fingerprint(self.cert_pem, self.key_pem, self.ca_pem)

    @property
    def checked(self) -> tuple[float, float, float, tuple[str, ...]]:
        """What `Checked` keeps of it."""
        expires = self.not_after.timestamp() if self.not_after else self.validity[1]
        return (*self.validity, expires, self.names)

    def expires_soon(self, now: datetime.datetime | None = None) -> bool:
        """Whether the certificate expires within EXPIRY_WARNING."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return self.not_after is not None and self.not_after - now < EXPIRY_WARNING


def fingerprint(cert_pem: str, key_pem: str, ca_pem: str | None) -> str:
    """A digest of certificate, key and CA together."""
    return hashlib.sha256(f"{cert_pem}\0{key_pem}\0{ca_pem or ''}".encode()).hexdigest()


def _dns_match(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == host


def decode_base64_pem(value: str) -> str:
    """Decode a base64 config blob that should hold PEM text."""
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
        text = raw.decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise TLSMaterialError("not valid base64-encoded PEM") from None
    if "-----BEGIN " not in text:
        raise TLSMaterialError("does not hold PEM data")
    return text


def load_certificates(pem: str) -> list[x509.Certificate]:
    """Parse a PEM bundle of one or more certificates."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise TLSMaterialError("not a PEM certificate") from None
    return certs


def load_private_key(pem: str) -> PrivateKeyTypes:
    """Parse an unencrypted PEM private key."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise TLSMaterialError("not an unencrypted PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and (
        key.curve.name not in GO_CURVES or _explicit_ec(_pem_der(pem))
    ):
        raise TLSMaterialError(f"EC keys must use a named curve: {', '.join(GO_CURVES)}")
    if not isinstance(
        key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
    ):
        raise TLSMaterialError("the registry takes RSA, ECDSA (named curve) or Ed25519 keys")
    return key


def _pem_der(pem: str) -> bytes:
    """The DER inside the first PEM block."""
    match = PEM_BODY.search(pem)
    try:
        return base64.b64decode("".join(match[1].split())) if match else b""
    except (binascii.Error, ValueError):
        return b""


def _explicit_ec(der: bytes) -> bool:
    return any(field in der for field in EXPLICIT_EC_FIELDS)


def _public_bytes(cert: x509.Certificate) -> bytes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if _explicit_ec(cert.public_bytes(serialization.Encoding.DER)):
        raise TLSMaterialError("certificate: EC keys must use a named curve")
    try:
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, UnsupportedAlgorithm):
        raise TLSMaterialError("certificate: its public key is of an unsupported kind") from None


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    except ValueError:
        raise TLSMaterialError("certificate: its subject alternative names do not parse") from None
    return (
        *sans.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in sans.get_values_for_type(x509.IPAddress)),
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def verify_chain(chain: list[x509.Certificate], cas: list[x509.Certificate]) -> None:
    """Refuse a chain (leaf first, then intermediates) that does not lead to one of `cas`."""
    current, intermediates = chain[0], chain[1:]
    for _ in range(len(chain)):
        if any(_issued_by(current, ca) for ca in cas):
            return
        issuer = next((c for c in intermediates if _issued_by(current, c)), None)
        if issuer is None:
            break
        intermediates.remove(issuer)
        current = issuer
    raise TLSMaterialError("ca: does not verify the certificate")


def check_validity(cert: x509.Certificate, now: datetime.datetime | None = None) -> None:
    """Refuse a certificate outside its validity period."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_after_utc <= now:
        raise TLSMaterialError(f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        raise TLSMaterialError(
            f"certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
        )


def check_server_tls(
    cert_pem: str, key_pem: str, ca_pem: str | None, checked: Checked | None = None
) -> ServerTLS:
    """Check a server certificate chain, its key and CA; return them ready to write.

    Material in `checked` is only checked against the clock (and fully when
    that fails, for the precise message). Raises TLSMaterialError naming the
    part that is wrong: "certificate", "key" or "ca" starts the message.
    """
    known = (checked or {}).get(fingerprint(cert_pem, key_pem, ca_pem))
    if known is not None and known[0] <= time.time() < known[1]:
        return ServerTLS(
            cert_pem=cert_pem,
            key_pem=key_pem,
            ca_pem=ca_pem or None,
            not_after=datetime.datetime.fromtimestamp(known[2], datetime.timezone.utc),
            names=tuple(known[3]),
            validity=(known[0], known[1]),
        )
    from cryptography.hazmat.primitives import serialization

    try:
        chain = load_certificates(cert_pem)
        check_validity(chain[0])
    except TLSMaterialError as e:
        raise TLSMaterialError(f"certificate: {e}") from None
    leaf = chain[0]
    try:
        key = load_private_key(key_pem)
    except TLSMaterialError as e:
        raise TLSMaterialError(f"key: {e}") from None
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != _public_bytes(leaf):
        raise TLSMaterialError("key: does not match the certificate")
    cas: list[x509.Certificate] = []
    if ca_pem:
        try:
            cas = load_certificates(ca_pem)
            for ca in cas:
                check_validity(ca)
        except TLSMaterialError as e:
            raise TLSMaterialError(f"ca: {e}") from None
        verify_chain(chain, cas)
    return ServerTLS(
        cert_pem=cert_pem,
        key_pem=key_pem,
        ca_pem=ca_pem or None,
        not_after=leaf.not_valid_after_utc,
        names=_names(leaf),
        validity=(
            max(c.not_valid_before_utc for c in [leaf, *cas]).timestamp(),
            min(c.not_valid_after_utc for c in [leaf, *cas]).timestamp(),
        ),
    )
