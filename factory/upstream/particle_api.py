"""Particle's Cloud API as the `particle` upstream uses it: a bearer access token, one request
under a timeout, and every answer classified here, once, into the outbox's exceptions
(docs/upstream-particle.md).

Particle's error bodies are `{"ok": false, "error": "..."}` (sometimes with `info`), or
OAuth's `{"error": "invalid_token", "error_description": "..."}` for a refused token. They are
deliberately vague, so each reason also says which call failed and what to check.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from yarl import URL

from factory import __version__
from factory.upstream.adapter import ConflictError, PermanentError, RetryableError
from factory.upstream.answers import retry_later, retryable, snippet

DEFAULT_URL = "https://api.particle.io"


class ParticleApi:
    """Calls Particle's Cloud API at `base_url` with `token`; each call gives up after
    `timeout` seconds. The session belongs to the caller."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str, *,
                 timeout: float = 10) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
            raise ValueError(f"Particle API URL must be http(s)://host[:port], got {base_url!r}")
        if timeout <= 0:
            raise ValueError(f"upstream timeout must be positive seconds, got {timeout}")
        if not token or not token.isprintable() or " " in token:
            raise ValueError("the Particle access token must be one printable word")
        self._session, self._base, self._timeout = session, url.with_path("/"), float(timeout)
        self._token = token

    def __repr__(self) -> str:  # never print the token
        return f"ParticleApi({str(self._base)!r})"

    async def call(self, method: str, path: str, *, body: Any = None, what: str = "") -> Any:
        """The JSON answer of a 2xx; anything else raised as the outbox's error. `what` says
        which step this is, for the reason ("adding device … to product …")."""
        url = self._base.join(URL(path.lstrip("/")))
        where = f"{what} ({method} {url.path})" if what else f"{method} {url.path}"
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self._token}",
                   "User-Agent": f"factory-station/{__version__}"}
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.request(
                    method, url, json=body, headers=headers, allow_redirects=False,
                    raise_for_status=False,
                ) as response:
                    status, reply_headers = response.status, response.headers
                    raw = await response.read()
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise RetryableError(f"{where}: Particle did not answer within "
                                 f"{self._timeout:g} s") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise RetryableError(f"{where}: Particle's TLS certificate did not verify "
                                 f"({exc.certificate_error}); check [upstream] url") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise RetryableError(f"{where}: {type(exc).__name__}: {exc}") from exc
        return answer(where, status, reply_headers, raw)


def answer(where: str, status: int, headers: Mapping[str, str], raw: bytes) -> Any:
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
    reason = f"{where}: {status} {message(decoded, raw)}"
    if retryable(status):
        raise retry_later(reason, status, headers)
    if status == 401:
        reason += ("; Particle refuses the station's access token: make a new one for a team "
                   "member of the product (particle token create, or an API user with "
                   "devices:import) and put it in [upstream] token_file")
    elif status == 403:
        reason += ("; the token's user may not do this in that product: make it a team "
                   "member (or an API user with the devices:import scope)")
    elif status == 404:
        reason += ("; Particle knows no such product for this token: check "
                   "[upstream.particle_products]")
    elif status == 409:
        raise ConflictError(reason, status=status)
    elif 300 <= status < 400:
        reason += f" (redirected to {headers.get('Location', '?')}; set [upstream] url to it)"
    raise PermanentError(reason, status=status)


def message(decoded: Any, raw: bytes) -> str:
    """Particle's own words: `error` with `error_description` or `info` when it gave them."""
    if isinstance(decoded, Mapping):
        words = [decoded[k] for k in ("error", "error_description", "info")
                 if isinstance(decoded.get(k), str) and decoded[k]]
        if words:
            return " - ".join(words)
    return snippet(raw) or "(no body)"
