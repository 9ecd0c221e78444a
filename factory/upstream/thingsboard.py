"""The `thingsboard` upstream: a unit becomes a ThingsBoard device named by its UCI, in a
device profile per product, with its registration in server attributes; a unit with a claim
secret gets ThingsBoard's server-side claiming data, so a customer claims it with the secret
printed on its label (docs/upstream-thingsboard.md).

Every call is safe to repeat: the device is looked up before it is made and compared when it
exists; attributes are written only where they are missing or owed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from factory.upstream.adapter import (
    Certificate,
    ClaimStatus,
    ConflictError,
    DeviceStatus,
    PermanentError,
    RegisterResult,
    Registration,
    RetryableError,
    canonical_uci,
)
from factory.upstream.thingsboard_api import ThingsBoardApi

SCOPE = "SERVER_SCOPE"
CLAIMING_DATA = "claimingData"
# The registration's own attributes: these decide whether a repeat is the same unit.
REGISTERED = ("product", "model", "hardware_id", "name", "station", "created")
# ThingsBoard's "no customer": a device with it belongs to the tenant, unclaimed.
NULL_UUID = "13814000-1dd2-11b2-8080-808080808080"
_NO_PROFILES: Mapping[str, str] = MappingProxyType({})


def claiming_data(secret: str, expires: datetime) -> str:
    """The `claimingData` value: one JSON string, as ThingsBoard parses it."""
    ms = int(expires.timestamp() * 1000)
    return json.dumps({"secretKey": secret, "expirationTime": ms}, separators=(",", ":"))


def read_claiming_data(value: Any) -> tuple[str, int] | None:
    """(secretKey, expirationTime) of a stored `claimingData` (a JSON string or object)."""
    try:
        data = json.loads(value) if isinstance(value, str) else value
        secret, ms = data["secretKey"], data["expirationTime"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(secret, str) or not isinstance(ms, int) or isinstance(ms, bool):
        return None
    return secret, ms


def wanted_attributes(device: Registration, station: str) -> dict[str, str]:
    """The server attributes that say who the unit is."""
    return {"product": device.product, "model": device.model,
            "hardware_id": device.hardware_id, "name": device.name, "station": station,
            "created": _iso(device.created)}


class ThingsBoardUpstream:
    """Registers units with ThingsBoard through `api`, as the tenant. `secret_for` gives a
    unit's label secret (ClaimSecrets.secret): ThingsBoard compares it in plain text."""

    def __init__(self, api: ThingsBoardApi, *, station: str,
                 device_profiles: Mapping[str, str] = _NO_PROFILES,
                 secret_for: Callable[[str], str] | None = None) -> None:
        self._api, self._station, self._secret_for = api, station, secret_for
        self._profiles_by_product = dict(device_profiles)
        self._profile_ids: dict[str, str] = {}

    async def register(self, device: Registration) -> RegisterResult:
        """Make the device (or find it with the same attributes: created False) and write
        what it lacks; a device with other attributes is a ConflictError naming them."""
        uci = canonical_uci(device.uci)
        wanted = wanted_attributes(device, self._station)
        claim = self._claiming_data(uci, device)
        profile = await self._profile_id(self._profiles_by_product.get(device.product,
                                                                       device.product))
        held = await self._device(uci)
        created = False
        if held is None:
            try:
                held = await self._api.call("POST", "api/device", body={
                    "name": uci, "label": device.name[:255],
                    "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile},
                    "additionalInfo": {"description": f"{device.model}, registered by "
                                                      f"factory station {self._station}"}})
                created = True
            except PermanentError as exc:
                if exc.status != 400 or "already exists" not in exc.reason:
                    raise
                held = await self._device(uci)  # made meanwhile by another call
                if held is None:
                    raise RetryableError(f"register {uci}: the device exists and then did "
                                         f"not; trying again") from exc
        device_id = _id(held)
        have = {} if created else await self._attributes(device_id)
        if not created:
            _check_same(uci, held, profile, have, wanted)
        owed: dict[str, Any] = {k: v for k, v in wanted.items() if k not in have}
        if claim is not None and _unowned(held) and \
                read_claiming_data(have.get(CLAIMING_DATA)) != read_claiming_data(claim):
            owed[CLAIMING_DATA] = claim
        if owed:
            await self._api.call("POST", f"api/plugins/telemetry/DEVICE/{device_id}/{SCOPE}",
                                 body=owed)
        return RegisterResult(created=created, device=_status(held, {**have, **owed}))

    async def preclaim(self, uci: str, account: str, csr_pem: str) -> Certificate:
        """ThingsBoard devices are claimed by customers, not pre-claimed by the factory."""
        raise PermanentError(f"pre-claim {uci}: the thingsboard upstream cannot pre-claim "
                             f"units (customers claim them with the label's secret); make "
                             f"the product claim = \"user\"", status=400)

    async def lookup(self, uci: str) -> DeviceStatus:
        """The device and its server attributes; an unknown unit is a PermanentError 404."""
        uci = canonical_uci(uci)
        held = await self._device(uci)
        if held is None:
            raise PermanentError(f"lookup {uci}: ThingsBoard has no device of that name; "
                                 f"the unit is not registered (yet)", status=404)
        return _status(held, await self._attributes(_id(held)))

    def _claiming_data(self, uci: str, device: Registration) -> str | None:
        if device.claim_expires is None:
            return None
        if self._secret_for is None:
            raise PermanentError(f"register {uci}: the unit has a claim secret but the "
                                 f"station has no claim key to derive it from", status=400)
        return claiming_data(self._secret_for(uci), device.claim_expires)

    async def _device(self, uci: str) -> Mapping[str, Any] | None:
        # /api/tenant/devices?deviceName= answers on every ThingsBoard since 2.x (4.x also
        # has /api/tenant/device, which older servers lack).
        held = await self._api.call("GET", "api/tenant/devices", query={"deviceName": uci},
                                    missing_ok=True)
        if held is not None and not isinstance(held, Mapping):
            raise RetryableError(f"GET /api/tenant/devices: not a device: {held!r:.200}")
        return held

    async def _attributes(self, device_id: str) -> dict[str, Any]:
        keys = ",".join((*REGISTERED, CLAIMING_DATA))
        rows = await self._api.call(
            "GET", f"api/plugins/telemetry/DEVICE/{device_id}/values/attributes/{SCOPE}",
            query={"keys": keys})
        if not isinstance(rows, list):
            raise RetryableError(f"attributes of device {device_id}: not a list: {rows!r:.200}")
        return {row["key"]: row.get("value") for row in rows
                if isinstance(row, Mapping) and isinstance(row.get("key"), str)}

    async def _profile_id(self, name: str) -> str:
        """The id of device profile `name`, made if ThingsBoard has none yet."""
        if name in self._profile_ids:
            return self._profile_ids[name]
        found = await self._find_profile(name)
        if found is None:
            try:
                made = await self._api.call("POST", "api/deviceProfile", body={
                    "name": name, "type": "DEFAULT", "transportType": "DEFAULT",
                    "provisionType": "DISABLED",
                    "description": "units registered by the factory station",
                    "profileData": {"configuration": {"type": "DEFAULT"},
                                    "transportConfiguration": {"type": "DEFAULT"},
                                    "provisionConfiguration": {"type": "DISABLED"}}})
                found = _id(made)
            except PermanentError as exc:
                if exc.status != 400 or "already exists" not in exc.reason:
                    raise
                found = await self._find_profile(name)
                if found is None:
                    raise RetryableError(f"device profile {name!r} exists and then did "
                                         f"not; trying again") from exc
        self._profile_ids[name] = found
        return found

    async def _find_profile(self, name: str) -> str | None:
        page = await self._api.call("GET", "api/deviceProfileInfos", query={
            "pageSize": "100", "page": "0", "textSearch": name})
        rows = page.get("data") if isinstance(page, Mapping) else None
        if not isinstance(rows, list):
            raise RetryableError(f"GET /api/deviceProfileInfos: not a page: {page!r:.200}")
        for row in rows:
            if isinstance(row, Mapping) and row.get("name") == name:
                return _id(row)
        return None


def _check_same(uci: str, held: Mapping[str, Any], profile: str, have: Mapping[str, Any],
                wanted: Mapping[str, str]) -> None:
    differing = [k for k, v in wanted.items() if k in have and have[k] != v]
    held_profile = held.get("deviceProfileId")
    if isinstance(held_profile, Mapping) and held_profile.get("id") != profile:
        differing.append("device_profile")
    if differing:
        raise ConflictError(f"register {uci}: ThingsBoard holds this device with other "
                            f"{', '.join(differing)}; a person has to decide which is right",
                            status=409, problem={"conflicting": differing})


def _status(held: Mapping[str, Any], attributes: Mapping[str, Any]) -> DeviceStatus:
    def text(key: str) -> str:
        value = attributes.get(key)
        return value if isinstance(value, str) else ""

    claim = read_claiming_data(attributes.get(CLAIMING_DATA))
    created_ms = held.get("createdTime")
    registered = datetime.fromtimestamp(created_ms / 1000, UTC) if isinstance(
        created_ms, int) else datetime.now(UTC)
    try:
        created = datetime.fromisoformat(text("created"))
    except ValueError:
        created = registered
    owner = None if _unowned(held) else str(held["customerId"]["id"])
    return DeviceStatus(
        uci=str(held.get("name", "")), product=text("product"),
        hardware_id=text("hardware_id"), model=text("model"), name=text("name"),
        created=created if created.utcoffset() is not None else registered,
        registered=registered, has_claim_secret=claim is not None,
        claim_expires=None if claim is None else datetime.fromtimestamp(claim[1] / 1000, UTC),
        claim=ClaimStatus("unclaimed") if owner is None else ClaimStatus(
            "claimed", account=owner, how="user"),
        certificate=None)


def _unowned(held: Mapping[str, Any]) -> bool:
    customer = held.get("customerId")
    return not isinstance(customer, Mapping) or customer.get("id") in (None, NULL_UUID)


def _id(entity: Any) -> str:
    try:
        value = entity["id"]["id"]
    except (TypeError, KeyError):
        value = None
    if not isinstance(value, str):
        raise RetryableError(f"ThingsBoard answered an entity without an id: {entity!r:.200}")
    return value


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
