"""The `aws-iot` upstream: units become AWS IoT things, pre-claims certificates from the unit's
CSR, through boto3's IoT client in a thread pool (docs/upstream-aws.md).

Every call is safe to repeat, which the outbox relies on: a thing is looked up before it is made
and compared when it exists; a pre-claim first looks at the certificates already attached to
the thing, keeps the one for the CSR's key and retires any other, so a retry after a crash
leaves exactly one active certificate per thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from factory import __version__
from factory.registry.ca import check_csr
from factory.registry.errors import InvalidCsr
from factory.upstream import aws_attributes as attrs
from factory.upstream.adapter import (
    Certificate,
    CertificateInfo,
    ClaimStatus,
    ConflictError,
    DeviceStatus,
    PermanentError,
    RegisterResult,
    Registration,
    RetryableError,
)
from factory.upstream.aws_errors import translate
from factory.upstream.http import _canonical

if TYPE_CHECKING:
    from mypy_boto3_iot import IoTClient
else:
    IoTClient = Any

log = logging.getLogger("factory.upstream.aws")
T = TypeVar("T")
THING_TYPE_PATTERN = r"^[a-zA-Z0-9:_-]{1,128}$"
# Thing-type attributes AWS indexes for search (at most three): find a unit by its MAC.
SEARCHABLE = ["hardware_id", "model", "station"]
MQTT_PORT = 8883
# Detaching a principal is eventually consistent in AWS: a delete right after may still see it.
_DELETE_TRIES = (0.0, 0.5, 2.0)
_NO_TYPES: Mapping[str, str] = MappingProxyType({})
_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def make_client(region: str, *, endpoint_url: str = "", profile: str = "",
                timeout: float = 10.0, pool: int = 10) -> IoTClient:
    """A boto3 IoT client with credentials from the standard chain and botocore's retries off
    (one attempt per call: the outbox's backoff decides when to try again)."""
    session = boto3.session.Session(profile_name=profile or None, region_name=region)
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=timeout, read_timeout=timeout, max_pool_connections=pool,
                    user_agent_extra=f"factory-station/{__version__}")
    return session.client("iot", endpoint_url=endpoint_url or None, config=config)


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
class _Cert:
    """A certificate attached to a thing, as far as pre-claim cares."""

    arn: str
    id: str
    status: str
    pem: str
    spki_sha256: str
    fingerprint: str
    not_after: datetime


class AwsIotUpstream:
    """AWS IoT Core through `client`; `station` goes into every thing's attributes, `policy`
    is attached to every certificate, `ca_chain` is handed back with each certificate."""

    def __init__(self, client: IoTClient, *, station: str, policy: str,
                 thing_types: Mapping[str, str] = _NO_TYPES, thing_group: str = "",
                 ca_chain: tuple[str, ...] = (), workers: int = 4) -> None:
        self._client, self._station, self._policy = client, station, policy
        self._thing_types, self._group, self._ca_chain = dict(thing_types), thing_group, ca_chain
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aws-iot")
        self._known_types: set[str] = set()
        self._group_ready = False
        self._endpoint = ""

    def close(self) -> None:
        """Let the worker threads go (calls under way finish first)."""
        self._pool.shutdown(wait=True)

    def thing_type(self, product: str) -> str:
        """The thing type a product's units get: configured, or the product id itself."""
        name = self._thing_types.get(product, product)
        if not (name and len(name) <= 128 and all(c.isascii() and (c.isalnum() or c in ":_-")
                                                    for c in name)):
            raise PermanentError(f"product {product!r} has no valid AWS IoT thing type name "
                                 f"(letters, digits, ':', '_', '-'); set "
                                 f"[upstream.thing_types] for it", status=400)
        return name

    async def register(self, device: Registration) -> RegisterResult:
        """Make the thing, or find it with the same attributes (created False); a thing with
        other attributes is a ConflictError naming them."""
        uci = _canonical(device.uci)
        try:
            wanted = attrs.attributes(device, self._station)
        except ValueError as exc:
            raise PermanentError(f"register {uci}: {exc}", status=400) from exc
        thing_type = self.thing_type(device.product)
        await self._ensure_thing_type(thing_type, device.product)
        held = await self._describe(uci)
        created = False
        if held is None:
            made = {**wanted, attrs.REGISTERED_AT: attrs.timestamp(datetime.now(UTC))}
            try:
                await self._call(f"CreateThing {uci}", self._client.create_thing,
                                 thingName=uci, thingTypeName=thing_type,
                                 attributePayload={"attributes": made})
                held, created = {"thingTypeName": thing_type, "attributes": made}, True
            except ConflictError:  # made meanwhile by another call: compare with that one
                held = await self._describe(uci)
                if held is None:
                    raise RetryableError(f"CreateThing {uci}: exists and then did not; "
                                         f"trying again") from None
        if not created:
            _check_same(uci, held, thing_type, wanted)
        if self._group:
            await self._ensure_group()
            await self._call(f"AddThingToThingGroup {uci}",
                             self._client.add_thing_to_thing_group,
                             thingGroupName=self._group, thingName=uci)
        cert = None if created else _info(await self._active(uci))
        return RegisterResult(created=created, device=_status(uci, held, cert))

    async def preclaim(self, uci: str, account: str, csr_pem: str) -> Certificate:
        """Certify the CSR's key for the registered thing `uci`, attach the policy and the
        thing, and mark the thing as claimed for `account`."""
        uci = _canonical(uci)
        try:
            key = check_csr(csr_pem, uci).spki_sha256
        except InvalidCsr as exc:
            raise PermanentError(f"pre-claim {uci}: {exc.detail}", status=exc.status) from exc
        held = await self._describe(uci)
        if held is None:
            raise PermanentError(f"pre-claim {uci}: no such thing in AWS IoT; register the "
                                 f"unit first", status=404)
        owner = attrs.read(held.get("attributes", {}), attrs.CLAIM_ACCOUNT)
        if owner and owner != account:
            raise ConflictError(f"pre-claim {uci}: already pre-claimed for another account "
                                f"({owner}); a person has to release it first", status=409)
        keep = None
        for cert in await self._certs(uci):
            if keep is None and cert.spki_sha256 == key and cert.status in ("ACTIVE", "INACTIVE"):
                keep = cert
            else:  # left by an attempt with another key: no thing keeps two certificates
                await self._retire(uci, cert)
        cert = keep or await self._issue(uci, csr_pem, key)
        if keep is not None:
            await self._attach_policy(uci, cert.arn)
        if cert.status != "ACTIVE":
            await self._call(f"UpdateCertificate {cert.id} ACTIVE",
                             self._client.update_certificate, certificateId=cert.id,
                             newStatus="ACTIVE")
        if not owner:
            claim = attrs.stored({attrs.CLAIM_ACCOUNT: account,
                                  attrs.CLAIMED_AT: attrs.timestamp(datetime.now(UTC))})
            await self._call(f"UpdateThing {uci}", self._client.update_thing, thingName=uci,
                             attributePayload={"attributes": claim, "merge": True})
        return Certificate(uci=uci, account=account, certificate_pem=cert.pem,
                           ca_chain=self._ca_chain, endpoint=await self._data_endpoint(),
                           fingerprint=cert.fingerprint, not_after=cert.not_after,
                           created=keep is None)

    async def lookup(self, uci: str) -> DeviceStatus:
        """DescribeThing and the thing's active certificate; unknown is a 404 PermanentError."""
        uci = _canonical(uci)
        held = await self._describe(uci)
        if held is None:
            raise PermanentError(f"lookup {uci}: no such thing in AWS IoT", status=404)
        return _status(uci, held, _info(await self._active(uci)))

    async def _issue(self, uci: str, csr_pem: str, key: str) -> _Cert:
        """A new certificate for the CSR, inactive, attached to the thing, with the policy.
        Attached before anything else, so that a crash leaves it where a retry finds it."""
        made = await self._call(f"CreateCertificateFromCsr {uci}",
                                self._client.create_certificate_from_csr,
                                certificateSigningRequest=csr_pem, setAsActive=False)
        cert = _cert(made["certificateArn"], made["certificateId"], "INACTIVE",
                     made["certificatePem"])
        try:
            if cert.spki_sha256 != key:
                raise PermanentError(f"CreateCertificateFromCsr {uci}: AWS IoT certified "
                                     f"another key than the CSR's; the certificate was "
                                     f"deleted", status=502)
            await self._call(f"AttachThingPrincipal {uci}", self._client.attach_thing_principal,
                             thingName=uci, principal=cert.arn)
        except Exception:  # not findable from the thing: delete it now, or it dangles
            await self._retire(uci, cert, quiet=True)
            raise
        # From here on a failure leaves it attached and inactive; the retry picks it up.
        await self._attach_policy(uci, cert.arn)
        return cert

    async def _attach_policy(self, uci: str, arn: str) -> None:
        await self._call(f"AttachPolicy {self._policy} to the certificate of {uci}",
                         self._client.attach_policy, policyName=self._policy, target=arn)

    async def _retire(self, uci: str, cert: _Cert, *, quiet: bool = False) -> None:
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
            principals = await self._principals(uci)
            if cert.arn in principals:
                await self._call(f"DetachThingPrincipal {uci}",
                                 self._client.detach_thing_principal, thingName=uci,
                                 principal=cert.arn)
            await self._delete(cert)
        except Exception:
            if not quiet:
                raise
            log.warning("could not clean up certificate %s of %s; it is inactive or "
                        "detached, a retry of the pre-claim retires it", cert.id, uci,
                        exc_info=True)
        else:
            log.info("retired certificate %s of %s (not for the unit's current key)",
                     cert.id, uci)

    async def _delete(self, cert: _Cert) -> None:
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

    async def _certs(self, uci: str) -> list[_Cert]:
        """The X.509 certificates attached to the thing (other principals are left alone)."""
        certs = []
        for arn in await self._principals(uci):
            if ":cert/" not in arn:
                continue
            cert_id = arn.rsplit("/", 1)[1]
            described = await self._call(f"DescribeCertificate {cert_id}",
                                         self._client.describe_certificate,
                                         certificateId=cert_id)
            info = described["certificateDescription"]
            certs.append(_cert(arn, cert_id, str(info.get("status", "")),
                               str(info.get("certificatePem", ""))))
        return certs

    async def _active(self, uci: str) -> _Cert | None:
        return next((c for c in await self._certs(uci) if c.status == "ACTIVE"), None)

    async def _principals(self, uci: str) -> list[str]:
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

    async def _describe(self, uci: str) -> dict[str, Any] | None:
        try:
            return dict(await self._call(f"DescribeThing {uci}", self._client.describe_thing,
                                         thingName=uci))
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise

    async def _ensure_thing_type(self, name: str, product: str) -> None:
        if name in self._known_types:
            return
        try:
            found = await self._call(f"DescribeThingType {name}",
                                     self._client.describe_thing_type, thingTypeName=name)
            if found.get("thingTypeMetadata", {}).get("deprecated"):
                raise PermanentError(f"thing type {name} (product {product}) is deprecated in "
                                     f"AWS IoT; undeprecate it or map the product to another "
                                     f"in [upstream.thing_types]", status=400)
        except PermanentError as exc:
            if exc.status != 404:
                raise
            with contextlib.suppress(ConflictError):  # made meanwhile
                await self._call(f"CreateThingType {name}", self._client.create_thing_type,
                                 thingTypeName=name, thingTypeProperties={
                                     "thingTypeDescription": f"units of product {product}, "
                                                             f"made by factory-station",
                                     "searchableAttributes": SEARCHABLE})
        self._known_types.add(name)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._call(f"DescribeThingGroup {self._group}",
                             self._client.describe_thing_group, thingGroupName=self._group)
        except PermanentError as exc:
            if exc.status != 404:
                raise
            with contextlib.suppress(ConflictError):  # made meanwhile
                await self._call(f"CreateThingGroup {self._group}",
                                 self._client.create_thing_group, thingGroupName=self._group)
        self._group_ready = True

    async def _data_endpoint(self) -> str:
        if not self._endpoint:  # one per account and region: asked once
            found = await self._call("DescribeEndpoint iot:Data-ATS",
                                     self._client.describe_endpoint, endpointType="iot:Data-ATS")
            self._endpoint = f"mqtts://{found['endpointAddress']}:{MQTT_PORT}"
        return self._endpoint

    async def _call(self, what: str, operation: Callable[..., T], **kwargs: Any) -> T:
        """One AWS call in the pool; its errors come out as the upstream family."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(operation, **kwargs))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, what) from exc


def _cert(arn: str, cert_id: str, status: str, pem: str) -> _Cert:
    try:
        parsed = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:  # no key to compare: never kept, so retired
        return _Cert(arn=arn, id=cert_id, status=status, pem=pem, spki_sha256="",
                     fingerprint="", not_after=datetime.fromtimestamp(0, UTC))
    spki = parsed.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    der = parsed.public_bytes(serialization.Encoding.DER)
    return _Cert(arn=arn, id=cert_id, status=status, pem=pem,
                 spki_sha256=hashlib.sha256(spki).hexdigest(),
                 fingerprint="sha256:" + hashlib.sha256(der).hexdigest(),
                 not_after=parsed.not_valid_after_utc)


def _info(cert: _Cert | None) -> CertificateInfo | None:
    return None if cert is None else CertificateInfo(fingerprint=cert.fingerprint,
                                                     not_after=cert.not_after)


def _check_same(uci: str, held: Mapping[str, Any], thing_type: str,
                wanted: Mapping[str, str]) -> None:
    differing = attrs.differing(held.get("attributes", {}), wanted)
    if held.get("thingTypeName") != thing_type:
        differing.append("thing_type")
    if differing:
        raise ConflictError(
            f"register {uci}: AWS IoT holds this thing with other {', '.join(differing)}; "
            f"a person has to decide which is right", status=409,
            problem={"type": "urn:factory-station:problem:conflict", "title": "Conflict",
                     "status": 409, "conflicting": differing})


def _status(uci: str, held: Mapping[str, Any], cert: CertificateInfo | None) -> DeviceStatus:
    held_attrs: Mapping[str, str] = held.get("attributes", {})
    created = attrs.read_time(held_attrs, "created")
    if created is None:
        raise PermanentError(f"thing {uci} has no 'created' attribute: it was not registered "
                             f"by a factory station", status=422)
    account = attrs.read(held_attrs, attrs.CLAIM_ACCOUNT)
    claim = (ClaimStatus(status="claimed", account=account, how="pre",
                         claimed_at=attrs.read_time(held_attrs, attrs.CLAIMED_AT))
             if account else ClaimStatus(status="unclaimed"))
    return DeviceStatus(
        uci=uci, product=attrs.read(held_attrs, "product"),
        hardware_id=attrs.read(held_attrs, "hardware_id"),
        model=attrs.read(held_attrs, "model"), name=attrs.read(held_attrs, "name"),
        created=created, registered=attrs.read_time(held_attrs, attrs.REGISTERED_AT) or created,
        has_claim_secret=bool(held_attrs.get("claim_secret_hash")),
        claim_expires=attrs.read_time(held_attrs, "claim_expires"), claim=claim,
        certificate=cert)
