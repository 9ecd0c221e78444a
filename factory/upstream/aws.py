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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from factory import __version__
from factory.certs import CertError, check_csr
from factory.problem_types import TYPE_BASE
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
    canonical_uci,
)
from factory.upstream.aws_certs import ThingCertificates, info
from factory.upstream.aws_errors import translate

if TYPE_CHECKING:
    from mypy_boto3_iot import IoTClient
else:
    IoTClient = Any

T = TypeVar("T")
# Thing-type attributes AWS indexes for search (at most three): find a unit by its MAC.
SEARCHABLE = ["hardware_id", "model", "station"]
MQTT_PORT = 8883
_NO_TYPES: Mapping[str, str] = MappingProxyType({})


def make_client(region: str, *, endpoint_url: str = "", profile: str = "",
                timeout: float = 10.0, pool: int = 10) -> IoTClient:
    """A boto3 IoT client with credentials from the standard chain and botocore's retries off
    (one attempt per call: the outbox's backoff decides when to try again)."""
    session = boto3.session.Session(profile_name=profile or None, region_name=region)
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=timeout, read_timeout=timeout, max_pool_connections=pool,
                    user_agent_extra=f"factory-station/{__version__}")
    return session.client("iot", endpoint_url=endpoint_url or None, config=config)


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
        self._certs = ThingCertificates(client, self._call, policy)

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
        uci = canonical_uci(device.uci)
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
        cert = None if created else info(await self._certs.active(uci))
        return RegisterResult(created=created, device=_status(uci, held, cert))

    async def preclaim(self, uci: str, account: str, csr_pem: str) -> Certificate:
        """Certify the CSR's key for the registered thing `uci`, attach the policy and the
        thing, and mark the thing as claimed for `account`."""
        uci = canonical_uci(uci)
        if not self._policy:
            raise PermanentError(f"pre-claim {uci}: no AWS IoT policy for certificates; set "
                                 f"[upstream] policy in the station config", status=400)
        try:
            key = check_csr(csr_pem, uci).spki_sha256
        except CertError as exc:
            raise PermanentError(f"pre-claim {uci}: {exc}", status=422,
                                 problem=_problem("invalid-csr", "Invalid CSR", 422, uci,
                                                  detail=str(exc), field="csr")) from exc
        held = await self._describe(uci)
        if held is None:
            raise _not_found(f"pre-claim {uci}: no such thing in AWS IoT; register the unit "
                             f"first", uci)
        owner = attrs.read(held.get("attributes", {}), attrs.CLAIM_ACCOUNT)
        if owner and owner != account:
            raise ConflictError(f"pre-claim {uci}: already pre-claimed for another account "
                                f"({owner}); a person has to release it first", status=409,
                                problem=_problem("claimed", "Claimed", 409, uci))
        keep = None
        for cert in await self._certs.attached(uci):
            if keep is None and cert.spki_sha256 == key and cert.status in ("ACTIVE", "INACTIVE"):
                keep = cert
            else:  # left by an attempt with another key: no thing keeps two certificates
                await self._certs.retire(uci, cert)
        cert = keep or await self._certs.issue(uci, csr_pem, key)
        if keep is not None:
            await self._certs.attach_policy(uci, cert.arn)
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
        uci = canonical_uci(uci)
        held = await self._describe(uci)
        if held is None:
            raise _not_found(f"lookup {uci}: no such thing in AWS IoT", uci)
        return _status(uci, held, info(await self._certs.active(uci)))

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


def _check_same(uci: str, held: Mapping[str, Any], thing_type: str,
                wanted: Mapping[str, str]) -> None:
    differing = attrs.differing(held.get("attributes", {}), wanted)
    if held.get("thingTypeName") != thing_type:
        differing.append("thing_type")
    if differing:
        raise ConflictError(
            f"register {uci}: AWS IoT holds this thing with other {', '.join(differing)}; "
            f"a person has to decide which is right", status=409,
            problem=_problem("conflict", "Conflict", 409, uci, conflicting=differing))


def _problem(slug: str, title: str, status: int, uci: str, **extra: Any) -> dict[str, Any]:
    """A problem body like the http registry's, so callers branch on the same types."""
    return {"type": TYPE_BASE + slug, "title": title, "status": status, "instance": uci,
            **extra}


def _not_found(reason: str, uci: str) -> PermanentError:
    return PermanentError(reason, status=404, problem=_problem("not-found", "Not found", 404, uci))


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
