"""Keys, CSRs and certificates on the station's side: a unit's key pair when the unit cannot
make its own, the CSR whose CN is the UCI, and the checks that a certificate fits a key.

Private keys exist here only as objects and as the PEM bytes handed to a unit driver or a
0600 bundle file; nothing in this module logs or journals them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KeyType = Literal["ec-p256", "rsa-2048"]
KEY_TYPES: tuple[KeyType, ...] = ("ec-p256", "rsa-2048")
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_DER, _PEM = serialization.Encoding.DER, serialization.Encoding.PEM
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


class CertError(ValueError):
    """A CSR or certificate that cannot be used, and why."""


@dataclass(frozen=True)
class KeyAndCsr:
    """A key made by the station and its CSR. `key_pem` is the secret: write it to the unit
    or a 0600 file, never to a log or the journal."""

    key_pem: bytes
    csr_pem: str
    spki_sha256: str


def new_key(kind: KeyType = "ec-p256") -> PrivateKey:
    if kind == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_and_csr(uci: str, kind: KeyType = "ec-p256") -> KeyAndCsr:
    """A fresh key pair and its CSR (CN = the UCI)."""
    return csr_for(new_key(kind), uci)


def csr_for(key: PrivateKey, uci: str) -> KeyAndCsr:
    """The CSR of an existing key (a batch run's resumed unit reuses its key)."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uci)]))
           .sign(key, hashes.SHA256()))
    return KeyAndCsr(_key_pem(key), csr.public_bytes(_PEM).decode(),
                     spki_sha256(key.public_key()))


def load_key(pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertError("not an unencrypted PEM private key") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise CertError("the key must be ECDSA or RSA")
    return key


def spki_sha256(public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | object) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: names a key without showing it."""
    if not isinstance(public, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise CertError("the public key must be ECDSA or RSA")
    return hashlib.sha256(public.public_bytes(_DER, _SPKI)).hexdigest()


@dataclass(frozen=True)
class CheckedCsr:
    """A CSR that passed `check_csr`, with its key's `spki_sha256`."""

    csr: x509.CertificateSigningRequest
    spki_sha256: str


def check_csr(pem: str, uci: str) -> CheckedCsr:
    """The CSR, if it is PEM PKCS#10 with a valid signature, CN = `uci`, and a P-256 or
    RSA-2048 key; otherwise a CertError saying which. The one CSR check: the reference
    registry and every upstream adapter translate its error at their own boundary."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError("csr is not a PEM PKCS#10 certificate request") from exc
    try:
        public = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError("the CSR's public key cannot be read") from exc
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, ec.SECP256R1):
            raise CertError(f"ECDSA keys must be P-256, this one is {public.curve.name}")
    elif isinstance(public, rsa.RSAPublicKey):
        if public.key_size != 2048:
            raise CertError(f"RSA keys must be 2048 bits, this one is {public.key_size}")
    else:
        raise CertError("the key must be ECDSA P-256 (preferred) or RSA-2048")
    if not csr.is_signature_valid:
        raise CertError("the CSR's signature does not verify: it was altered or signed with "
                        "another key")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != uci:
        found = ", ".join(str(n.value) for n in names) or "none"
        raise CertError(f"the CSR's subject CN must be the unit's UCI {uci}; found {found}")
    return CheckedCsr(csr, spki_sha256(public))


def csr_key_id(csr_pem: str, uci: str) -> str:
    """The CSR's key as `spki_sha256`, once `check_csr` passed it (what a unit returns is
    checked before anything is sent upstream)."""
    try:
        return check_csr(csr_pem, uci).spki_sha256
    except CertError as exc:
        raise CertError(f"the unit's CSR: {exc}") from exc


def certificate_key_id(cert_pem: str) -> str:
    """The certified key as `spki_sha256`, to check a certificate fits the unit's key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        return spki_sha256(cert.public_key())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError("not a PEM certificate") from exc


def fingerprint(cert_pem: str) -> str:
    """`sha256:<hex of the DER>`, as the upstream names certificates."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError as exc:
        raise CertError("not a PEM certificate") from exc
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
