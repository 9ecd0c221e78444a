"""The simulated ThingsBoard's endpoints: login and refresh, device profiles, devices by name,
server attributes, and the customer's claim and reclaim with ThingsBoard's answers
(ClaimDevicesServiceImpl: server-side `claimingData` only; the device-side cache is not
simulated)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import aiosqlite
from aiohttp import web

from factory.testbed.clouds.thingsboard.auth import (
    AUTHENTICATION,
    BAD_REQUEST_PARAMS,
    GENERAL,
    INVALID_ARGUMENTS,
    TbError,
    current_user,
    denied,
    not_found,
    token_pair,
    verify,
)
from factory.testbed.clouds.thingsboard.keys import SETTINGS, STORE
from factory.testbed.clouds.thingsboard.store import (
    NULL_UUID,
    TENANT_ID,
    Store,
    User,
    now_ms,
)

SCOPES = ("SERVER_SCOPE", "SHARED_SCOPE", "CLIENT_SCOPE")
CLAIM_ALLOWED, CLAIM_DATA = "claimingAllowed", "claimingData"


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise TbError(400, "Invalid request body", BAD_REQUEST_PARAMS) from None


async def _tenant(request: web.Request) -> User:
    user = await current_user(request, request.app[STORE])
    if user.authority != "TENANT_ADMIN":
        raise denied()
    return user


# --- auth ---------------------------------------------------------------------------------

async def login(request: web.Request) -> web.Response:
    body = await _json(request)
    store = request.app[STORE]
    user = None
    if isinstance(body, dict) and isinstance(body.get("username"), str) and \
            isinstance(body.get("password"), str):
        user = await store.check_login(body["username"], body["password"])
    if user is None:
        raise TbError(401, "Invalid username or password", AUTHENTICATION)
    return web.json_response(token_pair(user, await store.signing_key(),
                                        request.app[SETTINGS].tokens))


async def refresh(request: web.Request) -> web.Response:
    body = await _json(request)
    store = request.app[STORE]
    token = body.get("refreshToken") if isinstance(body, dict) else None
    claims = verify(token if isinstance(token, str) else "", await store.signing_key())
    user = await store.user(str(claims.get("userId")))
    if user is None or "REFRESH_TOKEN" not in claims.get("scopes", []):
        raise TbError(401, "Invalid refresh token", AUTHENTICATION)
    return web.json_response(token_pair(user, await store.signing_key(),
                                        request.app[SETTINGS].tokens))


async def me(request: web.Request) -> web.Response:
    user = await current_user(request, request.app[STORE])
    return web.json_response({
        "id": {"entityType": "USER", "id": user.id}, "email": user.email,
        "authority": user.authority, "firstName": user.first_name,
        "tenantId": {"entityType": "TENANT", "id": TENANT_ID},
        "customerId": {"entityType": "CUSTOMER", "id": user.customer_id}})


# --- device profiles ----------------------------------------------------------------------

def _profile_json(row: aiosqlite.Row) -> dict[str, Any]:
    body = json.loads(row["body"])
    return {**body, "id": {"entityType": "DEVICE_PROFILE", "id": row["id"]},
            "createdTime": row["created_ms"], "name": row["name"],
            "tenantId": {"entityType": "TENANT", "id": TENANT_ID}}


async def profile_infos(request: web.Request) -> web.Response:
    await current_user(request, request.app[STORE])
    try:
        size, page = int(request.query["pageSize"]), int(request.query["page"])
    except (KeyError, ValueError):
        raise TbError(400, "pageSize and page are required numbers",
                      BAD_REQUEST_PARAMS) from None
    search = request.query.get("textSearch", "").lower()
    rows = [r for r in await request.app[STORE].all("SELECT * FROM profiles ORDER BY name")
            if search in r["name"].lower()]
    chunk = rows[page * size:(page + 1) * size]
    return web.json_response({
        "data": [{k: v for k, v in _profile_json(r).items() if k not in ("profileData",)}
                 for r in chunk],
        "totalPages": -(-len(rows) // size) if size else 0, "totalElements": len(rows),
        "hasNext": (page + 1) * size < len(rows)})


async def save_profile(request: web.Request) -> web.Response:
    await _tenant(request)
    body = await _json(request)
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise TbError(400, "Device profile name should be specified!", INVALID_ARGUMENTS)
    kept = {k: body.get(k) for k in ("type", "transportType", "provisionType", "description",
                                     "profileData")}
    async with request.app[STORE].transaction() as db:
        async with db.execute("SELECT 1 FROM profiles WHERE name = ?", (name,)) as cur:
            if await cur.fetchone() is not None:
                raise TbError(400, "Device profile with such name already exists!",
                              BAD_REQUEST_PARAMS)
        profile_id = str(uuid.uuid4())
        await db.execute("INSERT INTO profiles VALUES (?, ?, ?, ?)",
                         (profile_id, name, now_ms(), json.dumps(kept)))
        async with db.execute("SELECT * FROM profiles WHERE id = ?", (profile_id,)) as cur:
            row = await cur.fetchone()
    assert row is not None
    return web.json_response(_profile_json(row))


# --- devices ------------------------------------------------------------------------------

async def _device_row(store: Store, *, name: str | None = None,
                      device_id: str | None = None) -> aiosqlite.Row:
    row = await store.one("SELECT devices.*, profiles.name AS type FROM devices JOIN profiles "
                          "ON profiles.id = devices.profile_id WHERE devices.name = ? OR "
                          "devices.id = ?", name, device_id)
    if row is None:
        raise not_found()
    return row


def device_json(row: aiosqlite.Row) -> dict[str, Any]:
    return {
        "id": {"entityType": "DEVICE", "id": row["id"]}, "createdTime": row["created_ms"],
        "tenantId": {"entityType": "TENANT", "id": TENANT_ID},
        "customerId": {"entityType": "CUSTOMER", "id": row["customer_id"]},
        "name": row["name"], "type": row["type"], "label": row["label"],
        "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": row["profile_id"]},
        "deviceData": {"configuration": {"type": "DEFAULT"},
                       "transportConfiguration": {"type": "DEFAULT"}},
        "firmwareId": None, "softwareId": None, "externalId": None, "version": 1,
        "additionalInfo": json.loads(row["additional_info"])}


async def tenant_device(request: web.Request) -> web.Response:
    await _tenant(request)
    name = request.query.get("deviceName")
    if not name:
        raise TbError(400, "Required request parameter 'deviceName' for method parameter "
                           "type String is not present", BAD_REQUEST_PARAMS)
    return web.json_response(device_json(await _device_row(request.app[STORE], name=name)))


async def get_device(request: web.Request) -> web.Response:
    user = await current_user(request, request.app[STORE])
    row = await _device_row(request.app[STORE], device_id=request.match_info["id"])
    if user.authority != "TENANT_ADMIN" and row["customer_id"] != user.customer_id:
        raise denied()
    return web.json_response(device_json(row))


async def save_device(request: web.Request) -> web.Response:
    """Create a device (updates of an existing one are not simulated)."""
    await _tenant(request)
    body = await _json(request)
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise TbError(400, "Device name should be specified!", INVALID_ARGUMENTS)
    if body.get("id"):
        raise TbError(400, "the simulated ThingsBoard only creates devices", BAD_REQUEST_PARAMS)
    store = request.app[STORE]
    profile = body.get("deviceProfileId")
    async with store.transaction() as db:
        # No profile given: ThingsBoard uses (or makes) the "default" one.
        wanted = profile.get("id") if isinstance(profile, dict) else None
        async with db.execute("SELECT id FROM profiles WHERE id = ? OR (? IS NULL AND name = "
                              "'default')", (wanted, wanted)) as cur:
            found = await cur.fetchone()
        if found is None and isinstance(profile, dict):
            raise TbError(400, "Device is referencing non-existing device profile!",
                          INVALID_ARGUMENTS)
        if found is None:
            profile_id = str(uuid.uuid4())
            await db.execute("INSERT INTO profiles VALUES (?, 'default', ?, '{}')",
                             (profile_id, now_ms()))
        else:
            profile_id = found["id"]
        async with db.execute("SELECT 1 FROM devices WHERE name = ?", (name,)) as cur:
            if await cur.fetchone() is not None:
                raise TbError(400, "Device with such name already exists!", BAD_REQUEST_PARAMS)
        device_id = str(uuid.uuid4())
        info = body.get("additionalInfo")
        await db.execute("INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?)", (
            device_id, name, now_ms(), profile_id, NULL_UUID, body.get("label"),
            json.dumps(info if isinstance(info, dict) else {})))
    return web.json_response(device_json(await _device_row(store, device_id=device_id)))


# --- attributes ---------------------------------------------------------------------------

def _scope(request: web.Request) -> str:
    scope = request.match_info["scope"]
    if scope not in SCOPES:
        raise TbError(400, f"Invalid scope: {scope}", BAD_REQUEST_PARAMS)
    return scope


async def _device_for(request: web.Request, *, write: bool) -> str:
    """The device of the path (DEVICE only), checked against the user's rights."""
    if request.match_info.get("type", "DEVICE") != "DEVICE":
        raise TbError(400, "the simulated ThingsBoard keeps attributes of devices only",
                      BAD_REQUEST_PARAMS)
    user = await current_user(request, request.app[STORE])
    row = await _device_row(request.app[STORE], device_id=request.match_info["id"])
    if user.authority != "TENANT_ADMIN" and (write or row["customer_id"] != user.customer_id):
        raise denied()
    return str(row["id"])


async def save_attributes(request: web.Request) -> web.Response:
    device_id = await _device_for(request, write=True)
    scope = _scope(request)
    if scope == "CLIENT_SCOPE":
        raise TbError(400, "Invalid scope: CLIENT_SCOPE", BAD_REQUEST_PARAMS)
    body = await _json(request)
    if not isinstance(body, dict) or not body:
        raise TbError(400, "Unable to parse attributes: expected a JSON object",
                      BAD_REQUEST_PARAMS)
    async with request.app[STORE].transaction() as db:
        await db.executemany(
            "INSERT INTO attributes VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
            "value = excluded.value, ts = excluded.ts",
            [(device_id, scope, key, json.dumps(value), now_ms()) for key, value in body.items()])
    return web.Response(status=200)


async def get_attributes(request: web.Request) -> web.Response:
    device_id = await _device_for(request, write=False)
    scope = _scope(request) if "scope" in request.match_info else None
    keys = request.query.get("keys")
    wanted = [k for k in keys.split(",") if k] if keys else None
    return web.json_response(await request.app[STORE].attributes(device_id, scope, wanted))


async def delete_attributes(request: web.Request) -> web.Response:
    device_id = await _device_for(request, write=True)
    scope = _scope(request)
    keys = [k for k in request.query.get("keys", "").split(",") if k]
    if not keys:
        raise TbError(400, "Required request parameter 'keys' is not present",
                      BAD_REQUEST_PARAMS)
    async with request.app[STORE].transaction() as db:
        await db.executemany("DELETE FROM attributes WHERE device_id = ? AND scope = ? AND "
                             "key = ?", [(device_id, scope, k) for k in keys])
    return web.Response(status=200)


# --- claiming -----------------------------------------------------------------------------

async def claim(request: web.Request) -> web.Response:
    """POST /api/customer/device/{name}/claim, as ClaimDevicesServiceImpl.claimDevice."""
    store = request.app[STORE]
    user = await current_user(request, store)
    if user.authority != "CUSTOMER_USER":
        raise denied()
    row = await _device_row(store, name=request.match_info["name"])
    if not await request.read():  # ThingsBoard dereferences the missing body: a 500
        raise TbError(500, "Cannot invoke \"ClaimRequest.getSecretKey()\" because "
                           "\"claimRequest\" is null", GENERAL)
    body = await _json(request)
    key = body.get("secretKey") if isinstance(body, dict) else None
    key = key if isinstance(key, str) else ""
    async with store.transaction() as db:
        async with db.execute("SELECT value FROM attributes WHERE device_id = ? AND scope = "
                              "'SERVER_SCOPE' AND key = ?", (row["id"], CLAIM_DATA)) as cur:
            stored = await cur.fetchone()
        async with db.execute("SELECT customer_id FROM devices WHERE id = ?",
                              (row["id"],)) as cur:
            held = await cur.fetchone()
        owner = held["customer_id"] if held is not None else NULL_UUID
        data = _claim_data(stored["value"]) if stored is not None else None
        if data is None:
            return _claim_answer("FAILURE" if owner == NULL_UUID else "CLAIMED")
        secret, expires_ms = data
        if time.time() * 1000 > expires_ms or not (key == secret or (not key and not secret)):
            return _claim_answer("FAILURE")
        if owner == NULL_UUID:
            await db.execute("UPDATE devices SET customer_id = ? WHERE id = ?",
                             (user.customer_id, row["id"]))
        await db.execute("DELETE FROM attributes WHERE device_id = ? AND scope = "
                         "'SERVER_SCOPE' AND key IN (?, ?)", (row["id"], CLAIM_ALLOWED,
                                                              CLAIM_DATA))
    if owner != NULL_UUID:
        return _claim_answer("CLAIMED")
    device = device_json(await _device_row(store, device_id=row["id"]))
    return web.json_response({"device": device, "response": "SUCCESS"})


def _claim_data(stored: str) -> tuple[str, int] | None:
    """ThingsBoard parses the attribute's text as ClaimData; anything else is no data."""
    value = json.loads(stored)
    try:
        data = json.loads(value) if isinstance(value, str) else value
        secret, expires = data.get("secretKey") or "", int(data["expirationTime"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return (secret, expires) if isinstance(secret, str) else None


def _claim_answer(response: str) -> web.Response:
    # ThingsBoard 3.x/4.x answer a refusal with the bare enum: the JSON string "FAILURE".
    return web.json_response(response, status=400)


async def reclaim(request: web.Request) -> web.Response:
    """DELETE /api/customer/device/{name}/claim: the device goes back to the tenant."""
    store = request.app[STORE]
    user = await current_user(request, store)
    row = await _device_row(store, name=request.match_info["name"])
    if user.authority == "CUSTOMER_USER" and row["customer_id"] != user.customer_id:
        raise denied()
    async with store.transaction() as db:
        if row["customer_id"] != NULL_UUID:
            await db.execute("UPDATE devices SET customer_id = ? WHERE id = ?",
                             (NULL_UUID, row["id"]))
            if not request.app[SETTINGS].allow_claiming_by_default:
                await db.execute(
                    "INSERT INTO attributes VALUES (?, 'SERVER_SCOPE', ?, 'true', ?) ON "
                    "CONFLICT DO UPDATE SET value = 'true', ts = excluded.ts",
                    (row["id"], CLAIM_ALLOWED, now_ms()))
    return web.Response(status=200)
