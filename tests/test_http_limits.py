"""Hostile HTTP clients against a real `factory serve`: bodies over max_body_bytes, slow-loris
heads and bodies, header floods. Each is refused or cut off, everyone else is still served, the
station's memory stays bounded, and it still issues UCIs afterwards.

Raw sockets, not aiohttp's client: these requests are ones a well-behaved client never sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.conftest import CONFIG_TEXT, PRODUCT, run_cli, write_config
from tests.processes import station_process

pytestmark = pytest.mark.slow
CLIENT_TIMEOUT = 2  # [station] client_timeout in these tests: cut-offs come quickly
MB = 1024 * 1024


def rss(pid: int) -> int:
    """The process's resident memory in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def bounded(before: int, after: int) -> bool:
    """Generous on purpose: allocator noise is fine, holding what clients sent is not."""
    return after < 2 * before + 50 * MB


def station_config(folder: Path) -> Path:
    text = CONFIG_TEXT.replace("max_body_bytes = 4096",
                               f"max_body_bytes = 4096\nclient_timeout = {CLIENT_TIMEOUT}")
    return write_config(folder, text)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, headers (lower-case names), body by Content-Length."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed without an answer")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def head(path: str, token: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: station", f"Authorization: Bearer {token}",
             "Content-Type: application/json", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def issue(url: str, token: str) -> int:
    """A well-behaved client asks for one UCI; its status."""
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/api/v1/ucis", json={"product": PRODUCT},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


def assert_problem(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, body
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert problem["status"] == expected and problem["title"] and problem["detail"]


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    path = station_config(tmp_path)
    token = run_cli(path, "token", "new", "--role", "device", "--name", "hostile").stdout
    return path, token.strip()


async def _send_until_answered(url: str, request: bytes, chunks: int,
                               chunk: bytes) -> tuple[int, dict[str, str], bytes, int]:
    """Send `request` then up to `chunks` x `chunk` while reading the answer; stops sending
    as soon as it comes. Returns the answer and how many body bytes went out."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    sent = 0
    answer: asyncio.Task[tuple[int, dict[str, str], bytes]] = asyncio.create_task(
        read_response(reader))
    try:
        writer.write(request)
        for _ in range(chunks):
            if answer.done():
                break
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            # drain() returns without yielding while the station reads as fast as we send:
            # let the answer's reader run, or an early answer goes unseen until the end.
            await asyncio.sleep(0)
    except ConnectionError:
        pass  # the station closed on us after answering
    try:
        status, headers, body = await asyncio.wait_for(answer, 30)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return status, headers, body, sent


async def test_a_body_over_the_limit_is_a_413_before_it_is_read(config: tuple[Path, str]):
    path, token = config
    async with station_process(path) as (proc, url):
        before = rss(proc.pid)
        # Content-Length says 256 MiB: the answer comes before the body does.
        status, headers, body, sent = await _send_until_answered(
            url, head("/api/v1/ucis", token, f"Content-Length: {256 * MB}"), 4096,
            b"x" * (64 * 1024))
        assert_problem(status, headers, body, 413)
        assert "max_body_bytes" in json.loads(body)["detail"]
        assert sent < 256 * MB, "the station waited for the whole body"
        # Chunked, no length given: refused once past max_body_bytes, not at the end.
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        status, headers, body, sent = await _send_until_answered(
            url, head("/api/v1/ucis", token, "Transfer-Encoding: chunked"), 4096, chunk)
        assert_problem(status, headers, body, 413)
        assert sent < 256 * MB
        after = rss(proc.pid)
        assert bounded(before, after), (before, after)
        assert await issue(url, token) == 201
        print(f"413: RSS {before / MB:.1f} -> {after / MB:.1f} MiB")


async def _slow_loris(url: str, index: int, stop: asyncio.Event) -> float:
    """Open a connection, send a request line, then one header every 0.3 s: never the end of
    the head. Returns the seconds until the station closed the connection."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    loop = asyncio.get_running_loop()
    opened = loop.time()
    writer.write(b"POST /api/v1/ucis HTTP/1.1\r\nHost: station\r\n")
    try:
        n = 0
        while not stop.is_set():
            n += 1
            writer.write(f"X-Slow-{index}-{n}: y\r\n".encode())
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1024), 0.3) == b"":
                    break  # closed by the station
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return loop.time() - opened


async def _idle(url: str) -> float:
    """Connect and send nothing; the seconds until the station hangs up."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    loop = asyncio.get_running_loop()
    opened = loop.time()
    with contextlib.suppress(ConnectionError):
        await reader.read()
    writer.close()
    return loop.time() - opened


async def test_slow_loris_clients_are_cut_off_and_others_still_served(
        config: tuple[Path, str]):
    path, token = config
    async with station_process(path) as (proc, url):
        before = rss(proc.pid)
        stop = asyncio.Event()
        held = [asyncio.create_task(_slow_loris(url, i, stop)) for i in range(150)]
        held += [asyncio.create_task(_idle(url)) for _ in range(150)]
        await asyncio.sleep(0.5)  # all of them connected and dribbling
        during = rss(proc.pid)
        # A well-behaved client is served while 300 connections are held open.
        assert [await issue(url, token) for _ in range(10)] == [201] * 10
        # Every slow client is cut off by the station (the 60 s only end a run whose station
        # never does, so that it fails instead of hanging).
        done, pending = await asyncio.wait(held, timeout=60)
        stop.set()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        assert not pending, f"{len(pending)} of {len(held)} slow clients were never cut off"
        seconds = sorted(task.result() for task in done)
        after = rss(proc.pid)
        assert bounded(before, during) and bounded(before, after), (before, during, after)
        assert await issue(url, token) == 201
        print(f"slow loris: {len(held)} connections held {seconds[0]:.1f}-{seconds[-1]:.1f} s; "
              f"RSS {before / MB:.1f} -> {during / MB:.1f} -> {after / MB:.1f} MiB")


async def test_a_body_that_dribbles_in_is_a_408(config: tuple[Path, str]):
    path, token = config
    async with station_process(path) as (proc, url):
        before = rss(proc.pid)
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(head("/api/v1/ucis", token, "Content-Length: 200"))
        answer = asyncio.create_task(read_response(reader))
        sent = 0
        with contextlib.suppress(ConnectionError):
            while not answer.done() and sent < 200:
                writer.write(b" ")
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.2)
        status, headers, body = await asyncio.wait_for(answer, 30)
        closed = await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        assert_problem(status, headers, body, 408)
        assert closed and headers.get("connection") == "close"
        assert sent < 200, "the station waited for the whole slow body"
        assert bounded(before, rss(proc.pid))
        assert await issue(url, token) == 201


FLOODS: dict[str, Any] = {
    "5000 headers": [f"X-Flood-{i}: {'v' * 20}" for i in range(5000)],
    "one 1 MiB header": ["X-Huge: " + "h" * MB],
    "a 100 KiB path": None,  # the request line itself
}


@pytest.mark.parametrize("flood", list(FLOODS))
async def test_a_header_flood_is_refused(config: tuple[Path, str], flood: str):
    path, token = config
    async with station_process(path) as (proc, url):
        before = rss(proc.pid)
        if FLOODS[flood] is None:
            request = head("/api/v1/units?" + "q" * (100 * 1024), token)
        else:
            request = head("/api/v1/ucis", token, *FLOODS[flood], "Content-Length: 2") + b"{}"
        status, _, body, _ = await _send_until_answered(url, request, 0, b"")
        # aiohttp's parser answers these before the station sees a request (text/plain).
        assert status == 400, body
        assert bounded(before, rss(proc.pid))
        assert await issue(url, token) == 201
