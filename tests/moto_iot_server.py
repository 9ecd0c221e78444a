"""moto's server as its own process, with two fixes that make its AWS IoT behave like the real
service where our tests depend on it (moto 5.2):

- `CreateCertificateFromCsr` in moto signs a fresh RSA key, not the CSR's: the certificate would
  not match the unit's key. Here it certifies the CSR's public key, as AWS does.
- `DescribeEndpoint` in moto makes up a new host name on every call; AWS answers the same
  account endpoint every time.

Run: python tests/moto_iot_server.py PORT   (binds 127.0.0.1)
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from moto.iot.models import FakeEndpoint, IoTBackend
from moto.server import main

_CA_KEY = ec.generate_private_key(ec.SECP256R1())
_CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moto test IoT CA")])
_ENDPOINTS: dict[tuple[str, str], FakeEndpoint] = {}


def create_certificate_from_csr(self: IoTBackend, csr: str, set_as_active: Any) -> Any:
    request = x509.load_pem_x509_csr(csr.encode())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(_CA_NAME)
            .public_key(request.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365 * 30))
            .sign(_CA_KEY, hashes.SHA256()))
    active = set_as_active in (True, "true", "True")
    return self.register_certificate(cert.public_bytes(Encoding.PEM).decode(),
                                     ca_certificate_pem=None, set_as_active=active,
                                     status="INACTIVE")


def describe_endpoint(self: IoTBackend, endpoint_type: str) -> FakeEndpoint:
    key = (self.region_name, endpoint_type)
    if key not in _ENDPOINTS:
        _ENDPOINTS[key] = FakeEndpoint(endpoint_type, self.region_name)
    return _ENDPOINTS[key]


IoTBackend.create_certificate_from_csr = create_certificate_from_csr  # type: ignore[method-assign]
IoTBackend.describe_endpoint = describe_endpoint  # type: ignore[method-assign]

if __name__ == "__main__":
    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
