"""ESP RainMaker host-driven claiming (seed 001) as the `rainmaker` upstream: `claim/initiate`
with the unit's MAC and platform → its node id, `claim/verify` with a CSR (CN = node id) → its
certificate and MQTT host. The access token is sent bare in `Authorization`, as the RainMaker
CLI sends it.

Every answer is classified here, once, into the outbox's exceptions: 408, 429 and 5xx (and no
answer) are `RetryableError`; the service's refusals (`{"status": "failure", "description":
…}`: quota, MAC, platform, CSR) and a refused token are `PermanentError`s whose reason says
what to do. RainMaker has no registration apart from claiming, so `register`, `preclaim` and
`lookup` refuse: a RainMaker unit is claimed by its fixture's `claiming` step
(rainmaker_claim.py), before its NVS partition is built.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from factory import __version__
from factory.upstream.adapter import (
    Certificate,
    DeviceStatus,
    PermanentError,
    RegisterResult,
    Registration,
    RetryableError,
)
from factory.upstream.answers import retry_later, retryable, snippet

DEFAULT_URL = "https://esp-claiming.rainmaker.espressif.com/"
QUOTA_WORDS = "does not have available quota"


@dataclass(frozen=True)
class NodeCertificate:
    """What claim/verify answered for a node's CSR."""

    certificate_pem: str
    mqtt_host: str


class RainmakerUpstream:
    """The claiming service at `base_url` with the account's access `token`; each call gives
    up after `timeout` seconds. The session belongs to the caller."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str, *,
                 timeout: float = 10, account: str = "") -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"claiming URL must be http(s)://host[:port][/path/], got "
                             f"{base_url!r}")
        if timeout <= 0:
            raise ValueError(f"upstream timeout must be positive seconds, got {timeout}")
        if not token or not token.isprintable() or " " in token:
            raise ValueError("the RainMaker access token must be one printable word")
        path = url.path if url.path.endswith("/") else url.path + "/"
        self._session, self._base, self._timeout = session, url.with_path(path), float(timeout)
        self._token, self.account = token, account

    def __repr__(self) -> str:  # never print the token
        return f"RainmakerUpstream({str(self._base)!r})"

    async def node_id(self, mac: str, platform: str) -> str:
        """The node id of the unit with `mac` (12 upper-case hex digits) on `platform`."""
        body = await self._post("claim/initiate", {"mac_addr": mac, "platform": platform},
                                f"asking a node id for MAC {mac}")
        node_id = body.get("node_id")
        if not isinstance(node_id, str) or not node_id or not node_id.isprintable():
            raise PermanentError(f"claim/initiate for MAC {mac} answered no node_id: "
                                 f"{snippet(json.dumps(body).encode())}", status=200)
        return node_id

    async def certify(self, node_id: str, csr_pem: str) -> NodeCertificate:
        """The certificate for a CSR whose CN is `node_id`, and the MQTT host."""
        body = await self._post("claim/verify", {"csr": csr_pem, "send_mqtt_host": True},
                                f"asking a certificate for node {node_id}")
        cert, host = body.get("certificate"), body.get("mqtt_host")
        if not isinstance(cert, str) or "BEGIN CERTIFICATE" not in cert:
            raise PermanentError(f"claim/verify for node {node_id} answered no certificate",
                                 status=200)
        if not isinstance(host, str) or not host:
            raise PermanentError(f"claim/verify for node {node_id} answered no mqtt_host",
                                 status=200)
        return NodeCertificate(cert, host)

    # The Upstream Protocol: RainMaker claims units on the line, never from the outbox.

    async def register(self, device: Registration) -> RegisterResult:
        raise PermanentError(_NO_OUTBOX, status=0)

    async def preclaim(self, uci: str, account: str, csr_pem: str) -> Certificate:
        raise PermanentError(_NO_OUTBOX + " (a batch pre-claim run cannot claim RainMaker "
                             "nodes: the service needs each unit's MAC)", status=0)

    async def lookup(self, uci: str) -> DeviceStatus:
        raise PermanentError("the RainMaker claiming service has no device lookup; the "
                             "unit's node id and certificate are in the journal", status=0)

    async def _post(self, path: str, payload: dict[str, Any], what: str) -> dict[str, Any]:
        url = self._base.join(URL(path))
        where = f"{what} (POST {url.path})"
        headers = {"Accept": "application/json", "Authorization": self._token,
                   "User-Agent": f"factory-station/{__version__}"}
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.post(url, json=payload, headers=headers,
                                              allow_redirects=False) as response:
                    status, reply_headers = response.status, response.headers
                    raw = await response.read()
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise RetryableError(f"{where}: the claiming service did not answer within "
                                 f"{self._timeout:g} s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise RetryableError(f"{where}: {type(exc).__name__}: {exc}") from exc
        return answer(where, status, reply_headers, raw)


_NO_OUTBOX = ("RainMaker has no registration apart from claiming: its units are claimed by "
              "their esptool fixture before their NVS is written")


def answer(where: str, status: int, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    """The JSON object of a 200; otherwise raise what the status means, with an action."""
    try:
        decoded = json.loads(raw) if raw.strip() else None
    except ValueError:
        decoded = None
    if 200 <= status < 300:
        if not isinstance(decoded, dict):
            raise RetryableError(f"{where}: {status} without a JSON object: {snippet(raw)}",
                                 status=status)
        return decoded
    words = _words(decoded, raw)
    reason = f"{where}: {status} {words}"
    if retryable(status):
        raise retry_later(reason + ("; throttled: the station waits and asks again"
                                    if status == 429 else ""), status, headers)
    if status in (401, 403):
        reason += ("; the claiming service refuses the station's access token (expired or "
                   "of another deployment): log in again (esp-rainmaker-cli login) and put "
                   "the new access token in [upstream] token_file")
    elif QUOTA_WORDS in words:
        reason += ("; the RainMaker account's claiming quota is used up: ask Espressif "
                   "(esp-rainmaker-admin@espressif.com) for more, or use another account's "
                   "token")
    elif "mac" in words.lower():
        reason += "; the unit's MAC was refused: check the chip and its eFuse MAC"
    elif "platform" in words.lower():
        reason += ("; the platform was refused: set [upstream] platform to the chip's "
                   "(esp32, esp32c3, esp32s3, ...) or leave it empty to use the detected chip")
    raise PermanentError(reason, status=status)


def _words(decoded: Any, raw: bytes) -> str:
    """The service's own words: `description` (its refusals) or `message` (its gateway)."""
    if isinstance(decoded, Mapping):
        for key in ("description", "message"):
            if isinstance(decoded.get(key), str) and decoded[key]:
                return str(decoded[key])
    return snippet(raw) or "(no body)"
