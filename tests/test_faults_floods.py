"""Units that flood their port (B9 of the outside probe): a console that never stops printing,
a "framed" unit that sends noise or frame headers with huge lengths. Each fails with a reason
after a bounded number of bytes, is journaled once, and the station reads no more of it than
its buffers hold while the unit stays in the fixture."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from factory.config import DriverName, Fixture, StationConfig
from factory.config.drivers import ConsoleSettings
from factory.journal.interface import Journal
from factory.journal.records import Event
from factory.testbed.sim.pty import SimPty
from factory.units.fixture import FixtureRunner
from factory.units.framed_protocol import HEADER, MAGIC
from tests.conftest import PRODUCT

pytestmark = pytest.mark.slow
# What the station may read from a flooding unit in WINDOW seconds once it has failed it: a few
# bounded reads per poll. Before the fix a console flood read everything for 2 s at every poll
# (18 MiB in 2 s here), and framed noise kept the fixture reading it for ever.
WINDOW = 2.0
BOUND = 6 * 1024 * 1024


def console_flood(rng: random.Random) -> bytes:
    return bytes(rng.randrange(32, 127) for _ in range(8192))  # no newline, no prompt


def framed_noise(rng: random.Random) -> bytes:
    return rng.randbytes(8192)


def huge_frames(rng: random.Random) -> bytes:
    # Headers whose length check passes but whose length is past the protocol's maximum,
    # and headers announcing the maximum and never finishing.
    frames = b""
    for length in (0xFFFF, 0x9000, 0x2000):
        frames += HEADER.pack(MAGIC, rng.randrange(65536), 0x81, 0, length, length ^ 0xFFFF)
        frames += rng.randbytes(64)
    return frames * 20


@contextlib.asynccontextmanager
async def flooding(link: Path, make: Callable[[random.Random], bytes]) -> AsyncIterator[SimPty]:
    """A unit on a new pty that writes `make`'s bytes without a pause and reads nothing."""
    sim = SimPty(baud=None)
    link.symlink_to(sim.path)
    rng = random.Random(16)

    chunk = b"".join(make(rng) for _ in range(8))  # made once: the flood is as fast as a pty

    async def flood() -> None:
        with contextlib.suppress(Exception):
            while True:
                await sim.write(chunk)
                await asyncio.sleep(0)

    task = asyncio.create_task(flood())
    try:
        yield sim
    finally:
        sim.hangup()
        link.unlink()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def fixture(config: StationConfig, journal: Journal, port: Path,
                  driver: DriverName) -> AsyncIterator[FixtureRunner]:
    spec = Fixture(name="f1", port=str(port), driver=driver, product=PRODUCT,
                   device_path="config/device.json5", poll_interval=0.25,
                   console=ConsoleSettings(timeout=2.0))
    product = config.product(PRODUCT)
    assert product is not None
    runner = FixtureRunner(spec, product, journal)
    task = asyncio.create_task(runner.run_forever())
    try:
        yield runner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(check: Callable[[], Coroutine[Any, Any, bool]], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.05)


async def failures(journal: Journal) -> list[Event]:
    return [e async for e in journal.events() if e.kind == "fixture_failed"]


@pytest.mark.parametrize(("driver", "make", "reason"), [
    ("console", console_flood, "does not stop sending|without the expected answer"),
    ("framed", framed_noise, "speaks no framed protocol"),
    ("framed", huge_frames, "speaks no framed protocol|garbled . of . times"),
], ids=["console-flood", "framed-noise", "framed-huge-lengths"])
async def test_a_flooding_unit_fails_once_with_a_reason_and_is_read_no_further(
        tmp_path: Path, config: StationConfig, journal: Journal, driver: DriverName,
        make: Callable[[random.Random], bytes], reason: str) -> None:
    link = tmp_path / "ttyFLOOD"
    async with flooding(link, make) as sim, fixture(config, journal, link, driver) as runner:
        async def failed() -> bool:
            return bool(await failures(journal))

        await until(failed, 20)
        assert runner.status.state == "failed"
        assert re.search(reason, runner.status.reason), runner.status.reason
        before = sim.sent
        await asyncio.sleep(WINDOW)  # the unit floods on, still in its fixture
        read = sim.sent - before
        found = await failures(journal)
        assert len(found) == 1, [e.data for e in found]
        assert re.search(reason, found[0].data["reason"])
        assert read < BOUND, f"the station read {read} bytes of the flood in {WINDOW} s"
