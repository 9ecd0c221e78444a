"""ThingsBoard's REST API as the `thingsboard` upstream uses it: the tenant's login (a JWT,
refreshed before it expires) or an API key, one request under a timeout, and every answer
classified here, once, into the outbox's exceptions (docs/upstream-thingsboard.md).

ThingsBoard's error bodies are `{"status", "message", "errorCode", "timestamp"}`; the message
goes into every reason, because it is usually the only thing that says what was wrong.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from factory import __version__
from factory.upstream.adapter import ConflictError, PermanentError, RetryableError
from factory.upstream.answers import retry_later, retryable, snippet

# A token this close to its expiry is refreshed first: a request never leaves with a token
# that may expire on the way.
REFRESH_MARGIN = 60.0


@dataclass(frozen=True)
class Login:
    """The tenant administrator's username and password (from [upstream] login_file)."""

    username: str
    password: str = ""

    def __repr__(self) -> str:  # never print the password
        return f"Login(username={self.username!r})"

    @classmethod
    def from_json(cls, text: str) -> Login:
        """`{"username": ..., "password": ...}`; ValueError saying what is missing."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"is not JSON ({exc})") from None
        if not isinstance(data, dict) or not all(
                isinstance(data.get(k), str) and data.get(k) for k in ("username", "password")):
            raise ValueError('must be a JSON object {"username": "...", "password": "..."}')
        return cls(data["username"], data["password"])


@dataclass(frozen=True)
class ApiKey:
    """A ThingsBoard API key (sent as `X-Authorization: ApiKey <key>`; ThingsBoard 4.3 on)."""

    key: str

    def __repr__(self) -> str:
        return "ApiKey(...)"


Credentials = Login | ApiKey


def jwt_lifetime(token: str) -> float | None:
    """How long a JWT lasts (`exp` - `iat`, seconds), read without verifying it: the server
    verifies; we only want to know when to refresh. Counting from our own clock keeps a
    station whose clock differs from the server's from refreshing too late or every time."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp, iat = claims["exp"], claims["iat"]
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not all(isinstance(v, int | float) for v in (exp, iat)) or exp <= iat:
        return None
    return float(exp - iat)


class ThingsBoardApi:
    """Calls the server at `base_url` as the tenant; each call gives up after `timeout`
    seconds. The session belongs to the caller (TLS as for the http upstream)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 credentials: Credentials, *, timeout: float = 10,
                 clock: Any = time.time) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
            raise ValueError(f"ThingsBoard URL must be http(s)://host[:port], got {base_url!r}")
        if timeout <= 0:
            raise ValueError(f"upstream timeout must be positive seconds, got {timeout}")
        self._session, self._base, self._timeout = session, url.with_path("/"), float(timeout)
        self._credentials, self._clock = credentials, clock
        self._token, self._refresh, self._expires = "", "", 0.0
        self._lock = asyncio.Lock()
        # How often the station logged in and refreshed its token (for tests and the log).
        self.logins = self.refreshes = 0

    async def call(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                   body: Any = None, missing_ok: bool = False) -> Any:
        """The JSON answer of one call (None for an empty one, or for 404 when `missing_ok`).
        A 401 logs in again once and repeats the call; a second 401 is permanent."""
        for attempt in (1, 2):
            headers = await self._auth_headers(fresh=attempt == 2)
            status, reply_headers, raw = await self._send(method, path, query, body, headers)
            if status == 401 and attempt == 1 and isinstance(self._credentials, Login):
                continue
            if status == 404 and missing_ok:
                return None
            return _answer(f"{method} {path}", status, reply_headers, raw)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _auth_headers(self, *, fresh: bool) -> dict[str, str]:
        if isinstance(self._credentials, ApiKey):
            return {"X-Authorization": f"ApiKey {self._credentials.key}"}
        async with self._lock:
            stale = self._token and self._clock() >= self._expires - REFRESH_MARGIN
            if fresh or not self._token:
                await self._login()
            elif stale:
                await self._refresh_token()
            return {"X-Authorization": f"Bearer {self._token}"}

    async def _login(self) -> None:
        assert isinstance(self._credentials, Login)
        body = {"username": self._credentials.username, "password": self._credentials.password}
        status, headers, raw = await self._send("POST", "api/auth/login", None, body, {})
        self._keep(_answer("POST /api/auth/login", status, headers, raw,
                           what="the tenant's login (check [upstream] login_file)"))
        self.logins += 1

    async def _refresh_token(self) -> None:
        status, headers, raw = await self._send("POST", "api/auth/token", None,
                                                {"refreshToken": self._refresh}, {})
        if status == 401:  # the refresh token expired too (a station idle for a week)
            await self._login()
            return
        self._keep(_answer("POST /api/auth/token", status, headers, raw))
        self.refreshes += 1

    def _keep(self, answer: Any) -> None:
        token = answer.get("token") if isinstance(answer, Mapping) else None
        if not isinstance(token, str) or not token:
            raise RetryableError(f"ThingsBoard answered a login without a token: "
                                 f"{snippet(json.dumps(answer).encode())}")
        refresh = answer.get("refreshToken")
        self._token, self._refresh = token, refresh if isinstance(refresh, str) else ""
        # Without a readable lifetime, assume ThingsBoard's default (9000 s).
        self._expires = self._clock() + (jwt_lifetime(token) or 9000)

    async def _send(self, method: str, path: str, query: Mapping[str, str] | None, body: Any,
                    headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        url = self._base.join(URL(path.lstrip("/")))
        if query:
            url = url.with_query(dict(query))
        where = f"{method} {url.path}"
        sent = {"Accept": "application/json", "User-Agent": f"factory-station/{__version__}",
                **headers}
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.request(
                    method, url, json=body, headers=sent, allow_redirects=False,
                    raise_for_status=False,
                ) as response:
                    return response.status, response.headers, await response.read()
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise RetryableError(f"{where}: ThingsBoard did not answer within "
                                 f"{self._timeout:g} s") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise RetryableError(f"{where}: ThingsBoard's TLS certificate did not verify "
                                 f"({exc.certificate_error}); check [upstream] url") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise RetryableError(f"{where}: {type(exc).__name__}: {exc}") from exc


def _answer(where: str, status: int, headers: Mapping[str, str], raw: bytes,
            what: str = "") -> Any:
    """The decoded answer of a 2xx; otherwise raise what the status means."""
    try:
        decoded = json.loads(raw) if raw.strip() else None
    except ValueError:
        decoded = None
        if 200 <= status < 300:
            raise RetryableError(f"{where}: {status} with a body that is not JSON: "
                                 f"{snippet(raw)}", status=status) from None
    if 200 <= status < 300:
        return decoded
    reason = f"{where}: {status} {_message(decoded, raw)}"
    if what:
        reason += f" ({what})"
    if retryable(status):
        raise retry_later(reason, status, headers)
    if status == 409:
        raise ConflictError(reason, status=status)
    if status == 401:
        reason += "; the station's ThingsBoard credentials are refused"
    elif status == 403:
        reason += "; the tenant account lacks a permission the station needs"
    elif 300 <= status < 400:
        reason += f" (redirected to {headers.get('Location', '?')}; set [upstream] url to it)"
    raise PermanentError(reason, status=status)


def _message(decoded: Any, raw: bytes) -> str:
    """ThingsBoard's own words: `message` and `errorCode` of its error body."""
    if isinstance(decoded, Mapping) and isinstance(decoded.get("message"), str):
        code = decoded.get("errorCode")
        return decoded["message"] + (f" (ThingsBoard error code {code})" if code else "")
    if isinstance(decoded, str):  # the claim endpoint answers a bare "FAILURE"
        return decoded
    return snippet(raw) or "(no body)"
