"""A local AWS IoT endpoint for tests: moto's server as its own process on 127.0.0.1 (see
tests/moto_iot_server.py), and a small HTTP proxy in front of it that answers chosen requests
with AWS's error wire format (throttling, access denied, 5xx) — moto never throttles."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

SERVER = Path(__file__).with_name("moto_iot_server.py")
REGION = "eu-west-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """`python tests/moto_iot_server.py PORT` until stopped."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Its request log goes to a file: a pipe nobody reads fills up and stalls the server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), str(self.port)],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"moto server exited: {self.log.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not start within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@dataclass
class Fault:
    """Answer the next `count` requests that `matches` with an AWS error."""

    status: int
    code: str
    message: str = "injected by the test proxy"
    count: int = 1
    matches: Callable[[web.Request], bool] = lambda _: True
    headers: dict[str, str] = field(default_factory=dict)
    # Never answer: the caller hangs there (to be killed); `reached` is set when it does.
    hold: bool = False
    reached: asyncio.Event = field(default_factory=asyncio.Event)


class FaultProxy:
    """Forwards every request to moto unless a queued Fault matches it first; counts what it
    saw so tests can tell which AWS operations were called."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str]] = []
        self.server: TestServer | None = None
        self.session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.session = aiohttp.ClientSession(auto_decompress=False)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        assert self.server is not None and self.session is not None
        await self.server.close()
        await self.session.close()

    def fail(self, fault: Fault) -> None:
        self.faults.append(fault)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path))
        for fault in self.faults:
            if fault.count > 0 and fault.matches(request):
                fault.count -= 1
                await request.read()
                if fault.hold:
                    fault.reached.set()
                    await asyncio.Event().wait()  # until the proxy closes
                body = json.dumps({"__type": fault.code, "message": fault.message})
                return web.Response(status=fault.status, text=body,
                                    content_type="application/json",
                                    headers={"x-amzn-ErrorType": fault.code, **fault.headers})
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        async with self.session.request(request.method, self.upstream + request.path_qs,
                                        headers=headers, data=await request.read()) as answer:
            raw = await answer.read()
            keep = {k: v for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")}
            return web.Response(status=answer.status, body=raw, headers=keep)
