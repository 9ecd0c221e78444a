"""systemd's notify protocol: the station's READY, STATUS, WATCHDOG and STOPPING datagrams
arrive at a real AF_UNIX datagram socket, the way systemd would receive them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from factory.sdnotify import Notifier
from tests.conftest import FACTORY, ROOT, write_config

pytestmark = pytest.mark.slow


@contextmanager
def listening(address: str) -> Iterator[socket.socket]:
    """A datagram socket at `address` ('@name': abstract), like systemd's notify socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


async def receive(sock: socket.socket, timeout: float = 20) -> dict[str, str]:
    """The next datagram as its VAR=value lines."""
    async with asyncio.timeout(timeout):
        data = await asyncio.get_running_loop().sock_recv(sock, 4096)
    return dict(line.split("=", 1) for line in data.decode().splitlines())


async def until_message(sock: socket.socket, key: str) -> tuple[dict[str, str], int]:
    """Read datagrams until one sets `key`; returns it and how many WATCHDOG=1 came first."""
    pings = 0
    while True:
        message = await receive(sock)
        if key in message:
            return message, pings
        pings += message.get("WATCHDOG") == "1"


def test_without_notify_socket_nothing_is_sent() -> None:
    env = {"PATH": "/bin"}
    notifier = Notifier.from_environ(env)
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("ready")  # no socket: does nothing, raises nothing


async def test_a_path_socket_and_the_environment_taken_out(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    with listening(address) as sock:
        notifier = Notifier.from_environ(env)
        assert env == {}  # children (lp, a shell) must not speak for the station
        assert notifier.watchdog_interval == 1.0
        notifier.ready("serving\nnow")
        assert await receive(sock) == {"READY": "1", "STATUS": "serving now"}
        notifier.close()


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environ(env).watchdog_interval is None


@pytest.mark.parametrize("usec", ["", "0", "-5", "²", "12a", "9" * 5000])
def test_a_watchdog_setting_that_is_no_number_of_microseconds_is_ignored(usec: str) -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": usec}
    assert Notifier.from_environ(env).watchdog_interval is None


async def test_an_unhealthy_station_stops_feeding_the_watchdog(tmp_path: Path) -> None:
    address = f"@factory-test-{os.getpid()}-{time.monotonic_ns()}"
    healthy = True
    with listening(address) as sock:
        notifier = Notifier(address, watchdog_usec=40_000)
        feeder = asyncio.create_task(notifier.feed_watchdog(lambda: healthy))
        assert await receive(sock, 2) == {"WATCHDOG": "1"}
        healthy = False
        await asyncio.sleep(0.05)  # a ping may already be on its way
        while True:
            try:
                await receive(sock, 0.1)
            except TimeoutError:
                break
        feeder.cancel()
        notifier.close()


def test_a_missing_socket_is_logged_not_raised(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    notifier.status("one")
    notifier.status("two")
    assert len([r for r in caplog.records if "cannot notify" in r.message]) == 1
    notifier.close()


@asynccontextmanager
async def station(config: Path, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *FACTORY, "-c", str(config), "serve", "--no-access-log",
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_the_station_says_ready_feeds_the_watchdog_and_says_stopping(
        tmp_path: Path) -> None:
    address = f"@factory-test-{os.getpid()}-{time.monotonic_ns()}"
    config = write_config(tmp_path)
    with listening(address) as sock:
        # WatchdogSec=0.3: a ping every 0.15 s
        async with station(config, {"NOTIFY_SOCKET": address,
                                    "WATCHDOG_USEC": "300000"}) as proc:
            ready, _ = await until_message(sock, "READY")
            assert ready["READY"] == "1"
            assert ready["STATUS"].startswith("serving http://127.0.0.1:")
            assert "0 fixtures" in ready["STATUS"]
            pings = 0
            async with asyncio.timeout(10):
                while pings < 5:
                    pings += (await receive(sock)).get("WATCHDOG") == "1"
            proc.send_signal(signal.SIGTERM)
            stopping, _ = await until_message(sock, "STOPPING")
            assert stopping["STATUS"].startswith("stopping")
            async with asyncio.timeout(20):
                assert await proc.wait() == 0
