"""The certificates attached to an AWS IoT thing: issue one from a CSR, find the one for a key,
retire the others (deactivate, detach, delete). Used by factory/upstream/aws.py.

Order matters for crash safety: a new certificate is made inactive and attached to the thing
first, so that whatever happens next a retry finds it there; only then get the policy and,
last, activation. A certificate is never active without being attached to its thing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from factory.upstream.adapter import CertificateInfo, ConflictError, PermanentError

if TYPE_CHECKING:
    from mypy_boto3_iot import IoTClient
else:
    IoTClient = Any

log = logging.getLogger("factory.upstream.aws")
T = TypeVar("T")
# Detaching a principal is eventually consistent in AWS: a delete right after may still see it.
_DELETE_TRIES = (0.0, 0.5, 2.0)
_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class Call(Protocol):
    """The adapter's way to make one AWS call (in its pool, errors translated)."""

    async def __call__(self, what: str, operation: Callable[..., T], **kwargs: Any) -> T: ...


def pem_blocks(text: str) -> list[str]:
    """Each certificate of a PEM bundle (a CA chain file); ValueError when one does not parse
    or there is none."""
    blocks = [m.group(0) + "\n" for m in _PEM_BLOCK.finditer(text)]
    if not blocks:
        raise ValueError("holds no PEM certificate")
    for block in blocks:
        x509.load_pem_x509_certificate(block.encode())
    return blocks


@dataclass(frozen=True)
class HeldCert:
    """A certificate attached to a thing, as far as pre-claim cares."""

    arn: str
    id: str
    status: str
    pem: str
    spki_sha256: str
    fingerprint: str
    not_after: datetime


class ThingCertificates:
    """Certificate work on things through `client`; every certificate gets `policy`."""

    def __init__(self, client: IoTClient, call: Call, policy: str) -> None:
        self._client, self._call, self._policy = client, call, policy

    async def issue(self, uci: str, csr_pem: str, key: str) -> HeldCert:
        """A new certificate for the CSR, inactive, attached to the thing, with the policy.
        Attached before anything else, so that a crash leaves it where a retry finds it."""
        made = await self._call(f"CreateCertificateFromCsr {uci}",
                                self._client.create_certificate_from_csr,
                                certificateSigningRequest=csr_pem, setAsActive=False)
        cert = read_cert(made["certificateArn"], made["certificateId"], "INACTIVE",
                         made["certificatePem"])
        try:
            if cert.spki_sha256 != key:
                raise PermanentError(f"CreateCertificateFromCsr {uci}: AWS IoT certified "
                                     f"another key than the CSR's; the certificate was "
                                     f"deleted", status=502)
            await self._call(f"AttachThingPrincipal {uci}", self._client.attach_thing_principal,
                             thingName=uci, principal=cert.arn)
        except Exception:  # not findable from the thing: delete it now, or it dangles
            await self.retire(uci, cert, quiet=True)
            raise
        # From here on a failure leaves it attached and inactive; the retry picks it up.
        await self.attach_policy(uci, cert.arn)
        return cert

    async def attach_policy(self, uci: str, arn: str) -> None:
        """Attach the policy to a certificate (AWS answers success when it already is)."""
        await self._call(f"AttachPolicy {self._policy} to the certificate of {uci}",
                         self._client.attach_policy, policyName=self._policy, target=arn)

    async def retire(self, uci: str, cert: HeldCert, *, quiet: bool = False) -> None:
        """Deactivate, detach and delete a certificate the thing must not keep. `quiet`:
        best effort while another error is on its way out."""
        try:
            if cert.status == "ACTIVE":
                await self._call(f"UpdateCertificate {cert.id} INACTIVE",
                                 self._client.update_certificate, certificateId=cert.id,
                                 newStatus="INACTIVE")
            attached = await self._call(f"ListAttachedPolicies {cert.id}",
                                        self._client.list_attached_policies, target=cert.arn)
            for policy in attached.get("policies", []):
                await self._call(f"DetachPolicy {cert.id}", self._client.detach_policy,
                                 policyName=policy["policyName"], target=cert.arn)
            principals = await self.principals(uci)
            if cert.arn in principals:
                await self._call(f"DetachThingPrincipal {uci}",
                                 self._client.detach_thing_principal, thingName=uci,
                                 principal=cert.arn)
            await self._delete(cert)
        except Exception:
            if not quiet:
                raise
            log.warning("could not clean up certificate %s of %s; while it stays attached, "
                        "a retry of the pre-claim retires it", cert.id, uci, exc_info=True)
        else:
            log.info("retired certificate %s of %s (not for the unit's current key)",
                     cert.id, uci)

    async def _delete(self, cert: HeldCert) -> None:
        for pause in _DELETE_TRIES:
            await asyncio.sleep(pause)
            try:
                await self._call(f"DeleteCertificate {cert.id}",
                                 self._client.delete_certificate, certificateId=cert.id)
                return
            except ConflictError:  # detach not yet seen by the delete: wait a little
                continue
        log.warning("certificate %s is inactive and detached but could not be deleted yet; "
                    "delete it by hand or leave it (it cannot connect)", cert.id)

    async def attached(self, uci: str) -> list[HeldCert]:
        """The X.509 certificates attached to the thing (other principals are left alone)."""
        certs = []
        for arn in await self.principals(uci):
            if ":cert/" not in arn:
                continue
            cert_id = arn.rsplit("/", 1)[1]
            described = await self._call(f"DescribeCertificate {cert_id}",
                                         self._client.describe_certificate,
                                         certificateId=cert_id)
            info = described["certificateDescription"]
            certs.append(read_cert(arn, cert_id, str(info.get("status", "")),
                                   str(info.get("certificatePem", ""))))
        return certs

    async def active(self, uci: str) -> HeldCert | None:
        """The thing's active certificate, if it has one."""
        return next((c for c in await self.attached(uci) if c.status == "ACTIVE"), None)

    async def principals(self, uci: str) -> list[str]:
        """Every principal ARN attached to the thing, all pages."""
        principals: list[str] = []
        token = ""
        while True:
            page = await self._call(f"ListThingPrincipals {uci}",
                                    self._client.list_thing_principals, thingName=uci,
                                    **({"nextToken": token} if token else {}))
            principals += page.get("principals", [])
            token = page.get("nextToken", "")
            if not token:
                return principals


def read_cert(arn: str, cert_id: str, status: str, pem: str) -> HeldCert:
    """A certificate as AWS described it, with its key and DER fingerprints."""
    try:
        parsed = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:  # no key to compare: never kept, so retired
        return HeldCert(arn=arn, id=cert_id, status=status, pem=pem, spki_sha256="",
                        fingerprint="", not_after=datetime.fromtimestamp(0, UTC))
    spki = parsed.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    der = parsed.public_bytes(serialization.Encoding.DER)
    return HeldCert(arn=arn, id=cert_id, status=status, pem=pem,
                    spki_sha256=hashlib.sha256(spki).hexdigest(),
                    fingerprint="sha256:" + hashlib.sha256(der).hexdigest(),
                    not_after=parsed.not_valid_after_utc)


def info(cert: HeldCert | None) -> CertificateInfo | None:
    """What `lookup` tells about a certificate."""
    return None if cert is None else CertificateInfo(fingerprint=cert.fingerprint,
                                                     not_after=cert.not_after)
