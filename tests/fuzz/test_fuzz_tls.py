"""Every combination of the TLS blobs, against the real registry: refused, or served verifiably.

4 certificates x 4 keys x 4 CAs. A combination the charm accepts must be one
a client verifies: TLS handshake trusting the test CA (the one CA given,
or none), for the address the unit publishes, then `/v2/` answers. One it
refuses blocks with every file unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools
import ssl
import urllib.request

import pytest

from fuzz.budget import COUNTS
from fuzz.strategies import CA, GOOD_CERT, OTHER_CERT, b64
from support import pki
from support.files import snapshot

OTHER_CA = pki.make_ca("fuzz-other-ca")
GARBAGE = b64("-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n")
CERTS = {
    "none": "",
    "good": b64(GOOD_CERT.cert_pem),
    "good+ca chain": b64(GOOD_CERT.cert_pem + CA.cert_pem),
    "names another host": b64(OTHER_CERT.cert_pem),
}
KEYS = {
    "none": "",
    "good": b64(GOOD_CERT.key_pem),
    "another": b64(OTHER_CERT.key_pem),
    "garbage": GARBAGE,
}
CAS = {
    "none": "",
    "issuer": b64(CA.cert_pem),
    "another": b64(OTHER_CA.cert_pem),
    "garbage": GARBAGE,
}
TRUSTED = {"good": CA, "good+ca chain": CA, "names another host": CA}


def client_answers(port: int, ca: pki.CertificateAuthority) -> bool:
    """What a client trusting `ca` gets from https://127.0.0.1:<port>/v2/."""
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    with urllib.request.urlopen(
        f"https://127.0.0.1:{port}/v2/", timeout=5, context=context
    ) as response:
        return response.status == 200


@pytest.mark.parametrize(
    ("cert", "key", "ca"), list(itertools.product(CERTS, KEYS, CAS)), ids="-".join
)
def test_tls_blobs(unit, cert, key, ca):
    family = COUNTS["TLS blob combinations, real registry"]
    machine = unit.machine
    blobs = {"tls-cert-blob": CERTS[cert], "tls-key-blob": KEYS[key], "tls-ca-blob": CAS[ca]}
    before, launches = snapshot(machine.root), sum(machine.launches.values())
    state = dataclasses.replace(unit.state, config={**unit.base, **blobs})
    state = unit.ctx.run(unit.ctx.on.config_changed(), state)
    status = state.unit_status
    port = int(state.config["registry-port"])
    if status.name == "blocked":
        family["refused"] += 1
        assert "Registry is not answering" not in status.message
        assert snapshot(machine.root) == before
        assert sum(machine.launches.values()) == launches
        return
    assert status.name == "active", status
    unit.state = state
    if "(https)" in status.message:
        family["served, verified by a client"] += 1
        # Served only with a certificate for 127.0.0.1 from CA, so a client trusts it so.
        assert client_answers(port, CA)
    else:
        family["plain HTTP (no blobs)"] += 1
        assert not any(blobs.values())
