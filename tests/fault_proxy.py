"""An HTTP proxy that fails on cue, put between a station and a real registry: down
(connection refused), slow (answers after the client gave up), 500, 429 with Retry-After,
a connection reset half way through the answer, or healthy (passes everything on).

It speaks real HTTP on a fixed port of 127.0.0.1, so "down" is a closed port, and keeps a
record of every request (when, for which unit, in which mode) for the test to check.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import web

Mode = Literal["down", "slow", "500", "429", "reset", "healthy"]
PROBLEM = "application/problem+json"
PASSED_ON = ("Authorization", "Content-Type", "Idempotency-Key")


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the request came in
    uci: str  # from the station's Idempotency-Key "<UCI>:<action>"
    mode: Mode
    created: bool  # the registry made the device now (201), whatever the station heard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FaultProxy:
    """The proxy in front of `target`; `await set_mode(...)` changes what it does next."""

    target: str  # the registry's base URL, no trailing slash
    slow_seconds: float = 1.5  # longer than the station's [upstream] timeout
    retry_after: int = 2  # seconds, sent with every 429
    port: int = field(default_factory=free_port)
    mode: Mode = "down"
    seen: list[Seen] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def set_mode(self, mode: Mode) -> None:
        """Fail (or not) in this way from now on; "down" closes the port."""
        if mode == "down" and self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        elif mode != "down" and self._runner is None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.mode = mode

    async def close(self) -> None:
        await self.set_mode("down")
        if self._session is not None:
            await self._session.close()

    def count(self, mode: Mode) -> int:
        return sum(1 for s in self.seen if s.mode == mode)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        mode = self.mode
        uci = request.headers.get("Idempotency-Key", "").partition(":")[0]
        at = time.monotonic()
        if mode == "500":
            self.seen.append(Seen(at, uci, mode, created=False))
            return _problem(500, "internal", "the registry fell over")
        if mode == "429":
            self.seen.append(Seen(at, uci, mode, created=False))
            return _problem(429, "too-many-requests", "slow down",
                            {"Retry-After": str(self.retry_after)})
        if mode == "slow":  # the registry acts, but only after the station stopped waiting
            await asyncio.sleep(self.slow_seconds)
        status, content_type, answer = await self._forward(request, body)
        self.seen.append(Seen(at, uci, mode, created=status == 201))
        if mode != "reset":
            return web.Response(status=status, body=answer,
                                headers={"Content-Type": content_type})
        # The registry did it; the station hears half an answer, then a reset.
        response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
        response.content_length = len(answer)
        await response.prepare(request)
        await response.write(answer[:len(answer) // 2])
        assert request.transport is not None
        request.transport.abort()
        return response

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, str, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {k: request.headers[k] for k in PASSED_ON if k in request.headers}
        async with self._session.request(request.method, self.target + request.path_qs,
                                         data=body, headers=headers) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), await reply.read()


def _problem(status: int, slug: str, detail: str,
             headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"type": f"urn:factory-station:problem:{slug}", "title": slug, "status": status,
         "detail": detail}, status=status, content_type=PROBLEM, headers=headers)
