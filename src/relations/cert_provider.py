"""The `cert-provider` endpoint (interface `tls-certificates`), both generations.

Two kinds of provider share the interface name. The legacy one (easyrsa in
Charmed Kubernetes) reads `common_name`/`sans` from our unit databag and
sends back a certificate *and its key*; the current one (self-signed-
certificates, vault, lego) signs a CSR whose key never leaves the unit,
handled by `TLSCertificatesRequiresV4`. We publish both requests, which
each provider ignores the other's, and tell the providers apart by what
they publish: `ca` in a remote unit databag (legacy) or `certificates` in
the remote application databag (current).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ops

from relations import databag
from state.settings import is_host, is_ip
from state.tls import Checked, ServerTLS, TLSMaterialError, check_server_tls

if TYPE_CHECKING:
    from charmlibs.interfaces.tls_certificates import (
        CertificateRequestAttributes,
        ProviderCapabilities,
    )

    from relations.cert_provider_requires import DefensiveRequires

logger = logging.getLogger(__name__)

ENDPOINT = "cert-provider"
PROXY_ENDPOINT = "website"
WAITING = "Waiting for a certificate from cert-provider"
# The TLS library's only events that come without the relation: its own secrets.
LIBRARY_SECRET_HOOKS = ("hooks/secret-expired", "hooks/secret-remove")


@dataclass(frozen=True)
class CertificateRequest:
    """The server certificate we ask for: a common name and the names clients use."""

    common_name: str
    sans: tuple[str, ...]

    def __post_init__(self):
        # Names come from relations too (the proxy's address): keep the ones a
        # certificate can carry, so that a remote charm's garbage cannot break the CSR.
        object.__setattr__(self, "sans", tuple(san for san in self.sans if is_host(san)))

    @property
    def ips(self) -> list[str]:
        """The SANs that are IP addresses."""
        return [san for san in self.sans if is_ip(san)]

    @property
    def dns_names(self) -> list[str]:
        """The SANs that are host names."""
        return [san for san in self.sans if not is_ip(san)]


def legacy_name(unit_name: str) -> str:
    """How the legacy protocol names a unit in its keys: `docker-registry_0`."""
    return unit_name.replace("/", "_")


class CertProvider(ops.Object):
    """Requests a server certificate from either provider generation and reads it back."""

    def __init__(
        self,
        charm: ops.CharmBase,
        request: Callable[[], CertificateRequest],
        on_certificate: Callable[[ops.EventBase], None],
    ):
        super().__init__(charm, ENDPOINT)
        self._unit = charm.unit
        self._request = request
        self.current: DefensiveRequires | None = None
        # The library (with pydantic, about half a hook's start-up) is loaded
        # only when it has something to do: most units have no cert-provider.
        if (
            charm.model.get_relation(ENDPOINT) is None
            and os.environ.get("JUJU_DISPATCH_PATH") not in LIBRARY_SECRET_HOOKS
        ):
            return
        from charmlibs.interfaces.tls_certificates import Mode

        from relations.cert_provider_requires import DefensiveRequires

        self.current = DefensiveRequires(
            charm,
            ENDPOINT,
            certificate_requests=self._current_requests,
            mode=Mode.UNIT,
            # Whatever can change the names the certificate must carry.
            refresh_events=[
                charm.on.config_changed,
                charm.on.update_status,
                charm.on[PROXY_ENDPOINT].relation_changed,
                charm.on[PROXY_ENDPOINT].relation_broken,
            ],
        )
        self.framework.observe(self.current.on.certificate_available, on_certificate)

    def _current_requests(
        self, _: ProviderCapabilities | None
    ) -> list[CertificateRequestAttributes]:
        from charmlibs.interfaces.tls_certificates import CertificateRequestAttributes

        request = self._request()
        return [
            CertificateRequestAttributes(
                common_name=request.common_name,
                sans_dns=request.dns_names or None,
                sans_ip=request.ips or None,
            )
        ]

    @property
    def relation(self) -> ops.Relation | None:
        """The cert-provider relation, unless it is being removed."""
        relation = self.model.get_relation(ENDPOINT)
        return relation if relation is not None and relation.active else None

    def publish_legacy_request(self) -> None:
        """Ask a legacy provider for our server certificate (the current one gets a CSR)."""
        relation = self.relation
        if relation is None:
            return
        request = self._request()
        name = legacy_name(self._unit.name)
        databag.update(
            relation.data[self._unit],
            {
                "common_name": request.common_name,
                "sans": json.dumps(list(request.sans)),
                "certificate_name": name,
                "unit_name": name,
            },
        )

    def server_tls(self, checked: Checked | None = None) -> ServerTLS | ops.StatusBase | None:
        """The provider's certificate for us, checked; a status when there is none to use.

        None when there is no relation. A certificate that does not parse or
        does not match its key is reported, never used; material in `checked`
        is only checked against the clock.
        """
        relation = self.relation
        if relation is None:
            return None
        try:
            for unit in relation.units:
                if relation.data[unit].get("ca"):
                    return self._legacy_certificate(relation.data[unit], checked)
            if relation.app is not None and relation.data[relation.app].get("certificates"):
                return self._current_certificate(checked)
        except TLSMaterialError as e:
            return ops.BlockedStatus(f"cert-provider sent an unusable certificate: {e}")
        except (ValueError, TypeError) as e:  # the requirer turns the library's errors into these
            logger.warning("cert-provider data does not parse: %s", e)
            return ops.BlockedStatus("cert-provider sent data that does not parse")
        return ops.WaitingStatus(WAITING)

    def _legacy_certificate(
        self, data: ops.RelationDataContent, checked: Checked | None
    ) -> ServerTLS | ops.StatusBase:
        name = legacy_name(self._unit.name)
        cert = data.get(f"{name}.server.cert")
        key = data.get(f"{name}.server.key")
        if not cert or not key:
            return ops.WaitingStatus(WAITING)
        chain = data.get("chain") or ""
        return check_server_tls(cert.strip() + "\n" + chain, key, data["ca"], checked)

    def _current_certificate(self, checked: Checked | None) -> ServerTLS | ops.StatusBase:
        if self.current is None:  # only while the relation is being removed
            return ops.WaitingStatus(WAITING)
        certificates, key = self.current.get_assigned_certificates()
        usable = [c for c in certificates if not c.revoked]
        if not usable and self.current.unparsable:
            return ops.BlockedStatus(
                f"cert-provider sent data that does not parse: {self.current.unparsable}"
            )
        if not usable or key is None:
            return ops.WaitingStatus(WAITING)
        provided = usable[0]
        intermediates = "".join(
            str(c) + "\n"
            for c in provided.chain
            if str(c) not in (str(provided.certificate), str(provided.ca))
        )
        return check_server_tls(
            str(provided.certificate) + "\n" + intermediates,
            str(key),
            str(provided.ca) + "\n",
            checked,
        )
