"""The registry's local CA: made at first start (ECDSA P-256 key in a 0600 file, self-signed
certificate), it signs CSRs whose subject CN is the unit's UCI."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from factory import certs
from factory.certs import CertError, CheckedCsr
from factory.files import write_in_place
from factory.testbed.registry.errors import InvalidCsr

CA_YEARS = 20
DEVICE_DAYS = 3650
_PEM = serialization.Encoding.PEM
_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


@dataclass(frozen=True)
class Issued:
    """A signed device certificate and what the registry indexes it by."""

    pem: str
    fingerprint: str  # "sha256:<hex of DER>"
    not_after: dt.datetime
    spki_sha256: str  # hex SHA-256 of the public key, to answer a retry with the same cert


class CertificateAuthority:
    """Holds the CA key and certificate; `sign` turns a checked CSR into a certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key, self.cert = key, cert
        self.cert_pem = cert.public_bytes(_PEM).decode()

    @classmethod
    def open(cls, key_path: Path, cert_path: Path) -> CertificateAuthority:
        """Load the CA, making it first if neither file exists."""
        if not key_path.exists() and not cert_path.exists():
            _create(key_path, cert_path)
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot load the registry CA from {key_path} and {cert_path}: "
                               f"{exc}; remove both to make a new CA") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise RuntimeError(f"{key_path} is not an ECDSA key")
        return cls(key, cert)

    def sign(self, checked: CheckedCsr, now: dt.datetime) -> Issued:
        """A client certificate for the CSR's subject and key, valid DEVICE_DAYS."""
        csr = checked.csr
        public = csr.public_key()
        not_after = (now + dt.timedelta(days=DEVICE_DAYS)).replace(microsecond=0)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(rsa_key=isinstance(public, rsa.RSAPublicKey)),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
        )
        cert = builder.sign(self._key, hashes.SHA256())
        return Issued(pem=cert.public_bytes(_PEM).decode(),
                      fingerprint="sha256:" + hashlib.sha256(cert.public_bytes(_DER)).hexdigest(),
                      not_after=not_after, spki_sha256=checked.spki_sha256)


def check_csr(pem: str, uci: str) -> CheckedCsr:
    """`certs.check_csr`, its refusal as the registry's InvalidCsr problem."""
    try:
        return certs.check_csr(pem, uci)
    except CertError as exc:
        raise InvalidCsr(str(exc)) from exc


def _key_usage(*, rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_encipherment=rsa_key,
                         content_commitment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=False, crl_sign=False, encipher_only=False,
                         decipher_only=False)


def _create(key_path: Path, cert_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Factory station"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Factory reference registry CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # O_EXCL + 0600 at creation: the key is never readable by others, not even briefly.
    write_in_place(key_path, key_pem, exclusive=True)
    # Public, but only the registry may replace it (whatever the umask).
    fd = os.open(cert_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(cert.public_bytes(_PEM))
