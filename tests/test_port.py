"""Serial ports over real pseudo-terminals: reads with deadlines, exclusivity, unplugging."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from factory.testbed.sim.pty import Misbehaviour, SimPty
from factory.units.errors import PortBusy, PortMissing, ProtocolError, UnitGone, UnitTimeout
from factory.units.port import KEEP_DRAINED, MAX_BURST, open_port


async def _echo(sim: SimPty) -> None:
    try:
        while True:
            data = await sim.read()
            await sim.write(data.upper())
    except Exception:  # the sim ends when unplugged
        return


async def test_write_and_read_back() -> None:
    sim = SimPty()
    task = asyncio.create_task(_echo(sim))
    port = await open_port(sim.path, 115200)
    try:
        await port.write(b"hello\nworld\n")
        assert await port.read_until(re.compile(rb"\n"), 2) == b"HELLO\n"
        assert await port.read_exactly(6, 2) == b"WORLD\n"
        assert port.bytes_out == 12 and port.bytes_in == 12
    finally:
        await port.close()
        sim.hangup()
        await task


async def test_silence_times_out_and_garbage_is_bounded() -> None:
    sim = SimPty(misbehaviour=Misbehaviour(silent=True))
    port = await open_port(sim.path, 115200)
    try:
        with pytest.raises(UnitTimeout, match="did not send"):
            await port.read_until(re.compile(rb"OK"), 0.2)
    finally:
        await port.close()
        sim.hangup()

    sim = SimPty()
    port = await open_port(sim.path, 115200)
    try:
        await sim.write(b"x" * 5000)
        with pytest.raises(ProtocolError, match="without the expected answer"):
            await port.read_until(re.compile(rb"OK"), 2, limit=1000)
    finally:
        await port.close()
        sim.hangup()


async def test_unplugged_unit_raises_unit_gone() -> None:
    sim = SimPty()
    port = await open_port(sim.path, 115200)
    try:
        sim.hangup()
        with pytest.raises(UnitGone):
            await port.read_exactly(1, 2)
    finally:
        await port.close()


async def test_a_write_to_an_unplugged_unit_is_unit_gone_not_a_logged_error(
        caplog: pytest.LogCaptureFixture) -> None:
    # A unit pulled while the fixture writes is part of a line's day: the fixture gets
    # UnitGone; nothing is logged as an error with a traceback (the load run saw six of those
    # in 800 units).
    sim = SimPty()
    port = await open_port(sim.path, 115200)
    try:
        sim.hangup()
        with caplog.at_level(logging.DEBUG), pytest.raises(UnitGone):
            await port.write(b"HELLO\n")
        await asyncio.sleep(0)
    finally:
        await port.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_port_is_exclusive_and_missing_ports_say_so(tmp_path: Path) -> None:
    sim = SimPty()
    port = await open_port(sim.path, 115200)
    try:
        with pytest.raises(PortBusy, match="held by another program"):
            await open_port(sim.path, 115200)
    finally:
        await port.close()
        sim.hangup()
    with pytest.raises(PortMissing, match="does not exist"):
        await open_port(str(tmp_path / "ttyUSB9"), 115200)
    with pytest.raises(PortMissing, match="only device paths and socket://"):
        await open_port("rfc2217://127.0.0.1:1", 115200)


async def _flood(sim: SimPty, chunk: bytes) -> None:
    """The unit's end writes `chunk` without a pause until it is unplugged."""
    try:
        while True:
            await sim.write(chunk)
            await asyncio.sleep(0)
    except Exception:
        return


async def test_a_flooding_unit_is_refused_after_a_bounded_number_of_bytes() -> None:
    """B9: draining a unit that never pauses stops after MAX_BURST bytes (not after seconds
    of reading everything it sends), and keeps only the tail of what it threw away."""
    sim = SimPty()
    flood = asyncio.create_task(_flood(sim, bytes(range(32, 127)) * 100))
    port = await open_port(sim.path, 115200)
    try:
        with pytest.raises(ProtocolError, match="does not stop sending") as refused:
            await port.drain_input(quiet=0.05, limit=30.0)
        assert MAX_BURST < port.bytes_in <= 1024 * 1024
        assert "bytes in" in str(refused.value)
        await sim.write(b"")
        before = port.bytes_in
        await asyncio.sleep(0.2)  # nobody reads: the port takes no more than its buffers
        assert port.bytes_in == before
    finally:
        await port.close()
        sim.hangup()
        await flood


async def test_draining_returns_only_the_tail_of_a_burst() -> None:
    sim = SimPty()
    port = await open_port(sim.path, 115200)
    try:
        await sim.write(b"a" * 50_000 + b"login: ")
        junk = await port.drain_input(quiet=0.2)
        assert junk.endswith(b"login: ") and len(junk) <= KEEP_DRAINED
        assert port.bytes_in == 50_007
    finally:
        await port.close()
        sim.hangup()
