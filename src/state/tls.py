"""Checks TLS material before the registry is given it.

A certificate that does not parse, does not match its key or has expired
would only fail when the registry restarts; checking here lets the charm
refuse it and keep serving with what it had.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


class TLSMaterialError(ValueError):
    """TLS material that the registry must not be given; the message says why."""


@dataclass(frozen=True)
class ServerTLS:
    """A checked server certificate, its key, and the CA clients should trust."""

    cert_pem: str
    key_pem: str
    ca_pem: str | None = None


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
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise TLSMaterialError("not a PEM certificate") from None
    return certs


def load_private_key(pem: str) -> PrivateKeyTypes:
    """Parse an unencrypted PEM private key."""
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise TLSMaterialError("not an unencrypted PEM private key") from None


def check_validity(cert: x509.Certificate, now: datetime.datetime | None = None) -> None:
    """Refuse a certificate outside its validity period."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_after_utc <= now:
        raise TLSMaterialError(f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        raise TLSMaterialError(
            f"certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
        )


def check_server_tls(cert_pem: str, key_pem: str, ca_pem: str | None) -> ServerTLS:
    """Check a server certificate chain, its key and CA; return them ready to write.

    Raises TLSMaterialError naming the part that is wrong: "certificate",
    "key" or "ca" starts the message.
    """
    try:
        leaf = load_certificates(cert_pem)[0]
        check_validity(leaf)
    except TLSMaterialError as e:
        raise TLSMaterialError(f"certificate: {e}") from None
    try:
        key = load_private_key(key_pem)
    except TLSMaterialError as e:
        raise TLSMaterialError(f"key: {e}") from None
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise TLSMaterialError("key: does not match the certificate")
    if ca_pem:
        try:
            for ca in load_certificates(ca_pem):
                check_validity(ca)
        except TLSMaterialError as e:
            raise TLSMaterialError(f"ca: {e}") from None
    return ServerTLS(cert_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem or None)
