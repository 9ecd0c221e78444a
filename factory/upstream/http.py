"""The `http` upstream: the registry contract of docs/upstream-http.md over an injected aiohttp
session. Every answer is classified here, once: 2xx is a result, 408/429/5xx and network
trouble are `RetryableError`, every other status is a `PermanentError`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, get_args

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from factory import __version__
from factory.upstream.adapter import (
    Certificate,
    CertificateInfo,
    ClaimHow,
    ClaimState,
    ClaimStatus,
    ConflictError,
    DeviceStatus,
    PermanentError,
    RegisterResult,
    Registration,
    RetryableError,
    canonical_uci,
)
from factory.upstream.answers import retry_later, retryable, snippet

CLAIM_STATES: tuple[ClaimState, ...] = get_args(ClaimState)
CLAIM_HOWS: tuple[ClaimHow, ...] = get_args(ClaimHow)
T = TypeVar("T")
C = TypeVar("C", bound=str)
# How much of a non-problem error body goes into a reason: enough to recognise a proxy's page.


class HttpUpstream:
    """The registry at `base_url`, called with a product `token`; each call gives up after
    `timeout` seconds (connecting, sending and reading the answer together).

    The session belongs to the caller, who also decides TLS. Certificates are verified by
    default; to trust a private CA and present a client certificate, build the session so::

        ctx = ssl.create_default_context(cafile="registry-ca.pem")  # no cafile: system CAs
        ctx.load_cert_chain("station-cert.pem", "station-key.pem")  # the client certificate
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str, *,
                 timeout: float = 10) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host or url.query_string:
            raise ValueError(f"upstream base URL must be http(s)://host[:port][/path] with no "
                             f"query, got {base_url!r}")
        if not token or token != token.strip() or not token.isprintable():
            raise ValueError("upstream token must be a non-empty printable string without "
                             "surrounding spaces (make one with 'factory registry token')")
        if timeout <= 0:
            raise ValueError(f"upstream timeout must be positive seconds, got {timeout}")
        self._session, self._base, self._timeout = session, url, float(timeout)
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, application/problem+json",
            "User-Agent": f"factory-station/{__version__}",
        }

    async def register(self, device: Registration) -> RegisterResult:
        """POST /v1/devices: 201 registered now, 200 already registered identically."""
        body: dict[str, Any] = {
            "id": canonical_uci(device.uci), "product": device.product,
            "hardware_id": device.hardware_id, "model": device.model, "name": device.name,
            "created": _iso(device.created),
        }
        if device.claim_secret_hash is not None and device.claim_expires is not None:
            body["claim_secret_hash"] = device.claim_secret_hash
            body["claim_expires"] = _iso(device.claim_expires)
        return await self._call(
            "POST", ("v1", "devices"), body, idempotency_key=f"{device.uci}:register",
            read=lambda status, answer: RegisterResult(created=status == 201,
                                                       device=_device(answer)))

    async def preclaim(self, uci: str, account: str, csr_pem: str) -> Certificate:
        """POST /v1/devices/{id}/preclaim: a certificate for the CSR's key, claimed for
        `account`; a retry with the same key gets the same certificate back."""
        return await self._call(
            "POST", ("v1", "devices", canonical_uci(uci), "preclaim"),
            {"account": account, "csr": csr_pem}, idempotency_key=f"{uci}:preclaim",
            read=lambda status, answer: _certificate(answer, created=status == 201))

    async def lookup(self, uci: str) -> DeviceStatus:
        """GET /v1/devices/{id}; an unknown unit is a PermanentError with status 404."""
        return await self._call("GET", ("v1", "devices", canonical_uci(uci)),
                                read=lambda _, answer: _device(answer))

    async def _call(self, method: str, path: tuple[str, ...], body: Any = None, *,
                    read: Callable[[int, Mapping[str, Any]], T],
                    idempotency_key: str | None = None) -> T:
        """Send one request under the timeout; `read` turns a 2xx answer into the result."""
        url = self._base.joinpath(*path)
        where = f"{method} {url}"
        headers = dict(self._headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.request(
                    method, url, json=body, headers=headers,
                    allow_redirects=False, raise_for_status=False,
                ) as response:
                    raw = await response.read()
                    status, reply_headers = response.status, response.headers
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise RetryableError(f"{where}: no answer within {self._timeout:g} s") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise RetryableError(f"{where}: the upstream's TLS certificate did not verify "
                                 f"({exc.certificate_error}); check its CA and host name "
                                 f"in the station config") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise RetryableError(f"{where}: {type(exc).__name__}: {exc}") from exc
        answer = _classify(where, status, reply_headers, raw)
        try:
            return read(status, answer)
        except (KeyError, TypeError, ValueError) as exc:
            # Every call is idempotent, so asking again is safe; a person sees the backlog.
            raise RetryableError(f"{where}: {status} with a body that does not follow "
                                 f"docs/upstream-http.md ({type(exc).__name__}: {exc}): "
                                 f"{snippet(raw)}", status=status) from exc


def _classify(where: str, status: int, headers: CIMultiDictProxy[str],
              raw: bytes) -> Mapping[str, Any]:
    """The answer's JSON object on 2xx; otherwise raise what the status means."""
    decoded = _json(raw)
    if 200 <= status < 300:
        if not isinstance(decoded, Mapping):
            raise RetryableError(f"{where}: {status} with a body that is not a JSON object: "
                                 f"{snippet(raw)}", status=status)
        return decoded
    problem: Mapping[str, Any] = decoded if isinstance(decoded, Mapping) else {}
    reason = f"{where}: {status} {_explain(problem, raw)}"
    if retryable(status):
        raise retry_later(reason, status, headers)
    if status == 409:
        raise ConflictError(reason, status=status, problem=problem)
    if 300 <= status < 400:
        reason += f" (redirected to {headers.get('Location', '?')}; set the base URL to it)"
    raise PermanentError(reason, status=status, problem=problem)


def _explain(problem: Mapping[str, Any], raw: bytes) -> str:
    title, detail = problem.get("title"), problem.get("detail")
    if isinstance(title, str) and isinstance(detail, str):
        return f"{title}: {detail}"
    return snippet(raw) or "(no body)"


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        return None


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _device(body: Mapping[str, Any]) -> DeviceStatus:
    claim, cert = _object(body, "claim"), body["certificate"]
    return DeviceStatus(
        uci=_str(body, "id"), product=_str(body, "product"),
        hardware_id=_str(body, "hardware_id"), model=_str(body, "model"),
        name=_str(body, "name"), created=_when(body, "created"),
        registered=_when(body, "registered"),
        has_claim_secret=_bool(body, "has_claim_secret"),
        claim_expires=None if body["claim_expires"] is None else _when(body, "claim_expires"),
        claim=ClaimStatus(
            status=_choice(claim, "status", CLAIM_STATES),
            account=_str(claim, "account") if "account" in claim else None,
            how=_choice(claim, "how", CLAIM_HOWS) if "how" in claim else None,
            claimed_at=_when(claim, "claimed_at") if "claimed_at" in claim else None,
        ),
        certificate=None if cert is None else CertificateInfo(
            fingerprint=_str(_object(body, "certificate"), "fingerprint"),
            not_after=_when(_object(body, "certificate"), "not_after")),
    )


def _certificate(body: Mapping[str, Any], *, created: bool) -> Certificate:
    chain = body["ca_chain"]
    if not isinstance(chain, list) or not all(isinstance(pem, str) for pem in chain):
        raise TypeError("ca_chain must be a list of PEM strings")
    return Certificate(
        uci=_str(body, "id"), account=_str(body, "account"),
        certificate_pem=_str(body, "certificate"), ca_chain=tuple(chain),
        endpoint=_str(body, "endpoint"), fingerprint=_str(body, "fingerprint"),
        not_after=_when(body, "not_after"), created=created,
    )


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _bool(body: Mapping[str, Any], key: str) -> bool:
    value = body[key]
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false, got {type(value).__name__}")
    return value


def _object(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body[key]
    if not isinstance(value, Mapping):
        raise TypeError(f"{key} must be an object, got {type(value).__name__}")
    return value


def _when(body: Mapping[str, Any], key: str) -> datetime:
    value = datetime.fromisoformat(_str(body, key))
    if value.utcoffset() is None:
        raise ValueError(f"{key} has no time zone: {value.isoformat()}")
    return value


def _choice(body: Mapping[str, Any], key: str, allowed: tuple[C, ...]) -> C:
    value = body[key]
    for choice in allowed:
        if value == choice:
            return choice
    raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
