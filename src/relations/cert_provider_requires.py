"""The current-generation TLS requirer, made defensive; imported only with cert-provider.

Kept apart from `cert_provider.py` so that a unit without the relation never
loads the TLS library (and pydantic): about half a hook's start-up.
"""

from __future__ import annotations

import ops
from charmlibs.interfaces.tls_certificates import (
    ProviderCertificate,
    TLSCertificatesError,
    TLSCertificatesRequiresV4,
)
from charmlibs.interfaces.tls_certificates._tls_certificates import (
    DataValidationError,
    _ProviderApplicationData,
)


class DefensiveRequires(TLSCertificatesRequiresV4):
    """The current-generation requirer, reading the provider's certificates one by one.

    The library parses every certificate in the provider's databag on every
    event it observes and raises on the first that does not parse, failing
    every hook until the relation goes. Here a bad entry is skipped and
    remembered, for the unit's status.
    """

    unparsable: str | None = None
    """Why the provider's data did not parse, if it did not."""

    def _load_provider_certificates(self) -> list[ProviderCertificate]:
        relation = self.model.get_relation(self.relationship_name)
        self.unparsable = None
        if relation is None or relation.app is None:
            return []
        try:
            data = _ProviderApplicationData.load(relation.data[relation.app])
        except (DataValidationError, ops.ModelError, ValueError, TypeError):
            if relation.data[relation.app].get("certificates"):
                self.unparsable = "its certificates are not the interface's JSON"
            return []
        certificates = []
        for entry in data.certificates:
            try:
                certificates.append(entry.to_provider_certificate(relation_id=relation.id))
            except (TLSCertificatesError, ValueError, TypeError) as e:
                self.unparsable = f"a certificate, CA or CSR does not parse ({e})"
        return certificates

    def get_assigned_certificates(self, *args, **kwargs):
        """The library's, its parse errors as ValueError (the caller need not import it)."""
        try:
            return super().get_assigned_certificates(*args, **kwargs)
        except TLSCertificatesError as e:
            raise ValueError(str(e)) from e
