"""The two generations of TLS provider, played by the tests.

`easyrsa_answer` answers our legacy request as easyrsa does (it generates
the key and sends it back). `current_provider_answer` runs the real
`TLSCertificatesProvidesV4` in a small provider charm under Scenario, so the
application databag it returns is what self-signed-certificates or vault
would publish for our CSR.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping

import ops
from charmlibs.interfaces.tls_certificates import (
    Certificate,
    PrivateKey,
    ProviderCertificate,
    TLSCertificatesProvidesV4,
)
from ops import testing

from support import pki


def easyrsa_answer(request: Mapping[str, str], ca: pki.CertificateAuthority) -> dict[str, str]:
    """The legacy provider's unit databag for the request in our unit databag."""
    sans = json.loads(request["sans"])
    cert, key = pki.issue(ca, request["common_name"], sans)
    name = request["unit_name"]
    return {
        "ca": ca.cert_pem.decode(),
        f"{name}.server.cert": cert.decode(),
        f"{name}.server.key": key.decode(),
    }


class _ProviderCharm(ops.CharmBase):
    """A minimal current-generation provider: signs every CSR with the given CA."""

    ca: pki.CertificateAuthority

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.certificates = TLSCertificatesProvidesV4(self, "certificates")
        framework.observe(self.on.certificates_relation_changed, self._sign)

    def _sign(self, event: ops.RelationChangedEvent) -> None:
        ca = Certificate.from_string(self.ca.cert_pem.decode())
        ca_key = PrivateKey.from_string(self.ca.key_pem.decode())
        for request in self.certificates.get_certificate_requests(event.relation.id):
            csr = request.certificate_signing_request
            cert = csr.sign(ca=ca, ca_private_key=ca_key, validity=datetime.timedelta(days=90))
            self.certificates.set_relation_certificate(
                ProviderCertificate(
                    relation_id=event.relation.id,
                    certificate=cert,
                    certificate_signing_request=csr,
                    ca=ca,
                    chain=[cert, ca],
                )
            )


def current_provider_answer(
    requirer_unit_data: Mapping[str, str], ca: pki.CertificateAuthority
) -> dict[str, str]:
    """The provider's application databag after it signed the CSR in our unit databag."""

    class ProviderCharm(_ProviderCharm):
        pass

    ProviderCharm.ca = ca
    ctx = testing.Context(
        ProviderCharm,
        meta={
            "name": "self-signed-certificates",
            "provides": {"certificates": {"interface": "tls-certificates"}},
        },
    )
    relation = testing.Relation(
        "certificates",
        remote_app_name="docker-registry",
        remote_units_data={0: dict(requirer_unit_data)},
    )
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        testing.State(leader=True, relations=[relation]),
    )
    return dict(state.get_relation(relation.id).local_app_data)


def answered(
    relation: testing.Relation,
    *,
    remote_app_data: Mapping[str, str] | None = None,
    remote_unit_data: Mapping[str, str] | None = None,
) -> testing.Relation:
    """`relation` (from an output state) once the provider has answered in its databags."""
    return testing.Relation(
        relation.endpoint,
        id=relation.id,
        remote_app_name=relation.remote_app_name,
        local_unit_data=dict(relation.local_unit_data),
        remote_app_data=dict(remote_app_data or {}),
        remote_units_data={0: dict(remote_unit_data or {})},
    )
