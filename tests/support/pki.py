"""A throwaway test PKI: a CA, server/client certificates and CSR signing.

RSA 2048 keeps every consumer (Go's crypto/tls in the registry and containerd, OpenSSL in
haproxy, Python) happy. Validity can be shifted to produce expired or not-yet-valid certs.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_KEY_SIZE = 2048


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA; keep it in memory and write `cert_pem` wherever trust is needed."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)


class IssuedCert(NamedTuple):
    """A leaf certificate and its private key, both PEM; unpacks as (cert_pem, key_pem)."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def bundle_pem(self) -> bytes:
        """Certificate followed by key, the single-file form haproxy's `crt` wants."""
        return self.cert_pem + self.key_pem


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def san_entries(sans: Sequence[str]) -> list[x509.GeneralName]:
    """Turn mixed strings into SAN entries: IP literals become IPAddress, the rest DNSName."""
    entries: list[x509.GeneralName] = []
    for san in sans:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(san.strip("[]"))))
        except ValueError:
            entries.append(x509.DNSName(san))
    return entries


def make_ca(cn: str = "test-ca", *, days: int = 365) -> CertificateAuthority:
    """Create a self-signed CA valid from one hour ago (tolerates small clock skew)."""
    key = _new_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert=cert, key=key)


def _sign_leaf(
    ca: CertificateAuthority,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    sans: Sequence[x509.GeneralName],
    *,
    days: int,
    not_before: datetime.datetime | None,
    not_after: datetime.datetime | None,
) -> bytes:
    now = _now()
    start = not_before or (now - datetime.timedelta(hours=1))
    end = not_after or (now + datetime.timedelta(days=days))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(
    ca: CertificateAuthority,
    cn: str,
    sans: Sequence[str] = (),
    *,
    days: int = 90,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> IssuedCert:
    """Issue a server+client certificate for `cn` with `sans` (IPs and DNS names mixed).

    Go ignores the CN for host checks, so pass every name the client will dial in `sans`.
    Pass `not_after` in the past to get an expired certificate.
    """
    key = _new_key()
    cert_pem = _sign_leaf(
        ca,
        _name(cn),
        key.public_key(),
        san_entries(sans),
        days=days,
        not_before=not_before,
        not_after=not_after,
    )
    return IssuedCert(cert_pem, _key_pem(key))


def make_csr(cn: str, sans: Sequence[str] = ()) -> IssuedCert:
    """Create a CSR as a charm would; returns (csr_pem, key_pem) in an `IssuedCert`."""
    key = _new_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(cn))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(san_entries(sans)), critical=False
        )
    csr = builder.sign(key, hashes.SHA256())
    return IssuedCert(csr.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def csr_sign(
    ca: CertificateAuthority,
    csr_pem: bytes,
    days: int = 90,
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> bytes:
    """Sign a CSR (e.g. one a charm sent over a certificates relation); returns cert PEM.

    Subject and SANs are copied from the CSR (any key type); its signature is checked first.
    """
    csr = x509.load_pem_x509_csr(csr_pem)
    if not csr.is_signature_valid:
        raise ValueError("CSR signature is invalid")
    public_key = csr.public_key()
    try:
        san_ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans: list[x509.GeneralName] = list(san_ext.value)
    except x509.ExtensionNotFound:
        sans = []
    return _sign_leaf(
        ca,
        csr.subject,
        public_key,
        sans,
        days=days,
        not_before=not_before,
        not_after=not_after,
    )
