"""The simulated ThingsBoard's tokens and errors: HS256 JWTs as ThingsBoard issues them (an
access token and a refresh token, each with `exp`), API keys, and its error bodies
`{"status", "message", "errorCode", "timestamp"}`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from factory.testbed.clouds.thingsboard.store import TENANT_ID, Store, User, now_ms

# ThingsBoard's error codes (ThingsboardErrorCode) the simulation answers with.
GENERAL, AUTHENTICATION, JWT_EXPIRED, PERMISSION_DENIED = 2, 10, 11, 20
INVALID_ARGUMENTS, BAD_REQUEST_PARAMS, ITEM_NOT_FOUND = 30, 31, 32


def error(status: int, message: str, code: int) -> web.Response:
    """ThingsBoard's error body."""
    return web.json_response({"status": status, "message": message, "errorCode": code,
                              "timestamp": now_ms()}, status=status)


class TbError(Exception):
    """Raised by a handler; the middleware answers it as ThingsBoard would."""

    def __init__(self, status: int, message: str, code: int) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def not_found() -> TbError:
    return TbError(404, "Requested item wasn't found!", ITEM_NOT_FOUND)


def denied() -> TbError:
    return TbError(403, "You don't have permission to perform this operation!",
                   PERMISSION_DENIED)


@dataclass(frozen=True)
class TokenSettings:
    access_ttl: int = 9000  # ThingsBoard's defaults (jwt.tokenExpirationTime, seconds)
    refresh_ttl: int = 604800


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: dict[str, Any], key: bytes) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def verify(token: str, key: bytes) -> dict[str, Any]:
    """The claims of a token signed with `key`; TbError 401 if it is not, or has expired."""
    try:
        head, body, mac = token.split(".")
        good = hmac.compare_digest(
            _unb64(mac), hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        claims = json.loads(_unb64(body)) if good else None
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        raise TbError(401, "Authentication failed", AUTHENTICATION)
    if claims.get("exp", 0) <= time.time():
        raise TbError(401, "Token has expired", JWT_EXPIRED)
    return claims


def token_pair(user: User, key: bytes, settings: TokenSettings) -> dict[str, str]:
    """`{"token", "refreshToken"}` as POST /api/auth/login answers."""
    now = int(time.time())
    common = {"sub": user.email, "userId": user.id, "iss": "thingsboard.io", "iat": now}
    access = {**common, "scopes": [user.authority], "firstName": user.first_name,
              "enabled": True, "isPublic": False, "tenantId": TENANT_ID,
              "customerId": user.customer_id, "exp": now + settings.access_ttl}
    refresh = {**common, "scopes": ["REFRESH_TOKEN"], "exp": now + settings.refresh_ttl}
    return {"token": sign(access, key), "refreshToken": sign(refresh, key)}



async def current_user(request: web.Request, store: Store) -> User:
    """The user of `X-Authorization: Bearer <JWT>` or `ApiKey <key>`; TbError 401 if none."""
    header = request.headers.get("X-Authorization", "")
    scheme, _, value = header.partition(" ")
    user: User | None = None
    if scheme == "Bearer" and value:
        claims = verify(value, await store.signing_key())
        if "REFRESH_TOKEN" in claims.get("scopes", []):
            raise TbError(401, "Authentication failed", AUTHENTICATION)
        user = await store.user(str(claims.get("userId")))
    elif scheme == "ApiKey" and value:
        user = await store.api_key_user(value)
    if user is None:
        raise TbError(401, "Authentication failed", AUTHENTICATION)
    return user
