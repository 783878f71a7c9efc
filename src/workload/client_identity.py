"""The charm's own client certificate, for reaching its registry under mutual TLS.

With `tls-client-auth` the registry admits only clients whose certificate the
CA signed, and the charm has no such certificate (the CA's key stays with the
TLS provider or the operator). So it makes its own: a CA that signs one client
certificate and is then discarded (its key is never stored), trusted by the
registry beside the operator's CA. The actions and the liveness probe present
that certificate; nobody else can get one signed by that CA.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from pathlib import Path

VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class ClientIdentity:
    """Where the certificate and key are on the unit, and the CA that signed it."""

    folder: Path

    @property
    def ca_path(self) -> Path:
        """The charm's CA certificate (its key was discarded once it signed)."""
        return self.folder / "charm-ca.crt"

    @property
    def cert_path(self) -> Path:
        """The client certificate the actions and the probe present."""
        return self.folder / "client.cert"

    @property
    def key_path(self) -> Path:
        """Its key, readable by root only."""
        return self.folder / "client.key"

    def ca_pem(self) -> str:
        """The CA to trust beside the operator's; made (with the certificate) when absent."""
        if not all(p.exists() for p in (self.ca_path, self.cert_path, self.key_path)):
            self._make()
        return self.ca_path.read_text()

    def remove(self) -> None:
        """Mutual TLS is off: nothing of it stays."""
        for path in (self.ca_path, self.cert_path, self.key_path):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    def _make(self) -> None:
        # Imported here: a hook whose identity exists already need not load cryptography.
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docker-registry charm")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docker-registry actions")])
            )
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + VALIDITY)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def identity_for(client_cas_path: Path) -> ClientIdentity:
    """The charm's identity kept beside the registry's bundle of client CAs."""
    return ClientIdentity(client_cas_path.with_name("charm-client"))
