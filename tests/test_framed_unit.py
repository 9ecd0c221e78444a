"""The framed driver against the reference simulated unit over a real pseudo-terminal, with
real files under a tmp root, in health and with each fault the simulator can show."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.config.drivers import FramedSettings
from factory.testbed.sim.framed import run_framed_unit
from factory.testbed.sim.pty import Misbehaviour, SimPty
from factory.units.driver import Identity, Verification
from factory.units.errors import (
    ProtocolError,
    UnitGone,
    UnitRefused,
    UnitTimeout,
    VerifyMismatch,
)
from factory.units.framed import FramedDriver
from factory.units.framed_payloads import (
    Commit,
    Count,
    Hello,
    Put,
)
from factory.units.framed_protocol import (
    MAGIC,
    REPLY,
    Frame,
    FrameDecoder,
    Op,
    Status,
)
from factory.units.port import Port, open_port

IDENTITY = Identity(hardware_id="02:00:00:12:34:56", model="AQ-100", firmware="sim-1.0")
FAST = FramedSettings(timeout=0.5, retries=2, chunk_size=256)  # a healthy reply takes ~1 ms
SHORT = FramedSettings(timeout=0.15, retries=2, chunk_size=256)  # for units that never answer
DEVICE_FILE = "/etc/factory/device.json5"


@dataclass
class Rig:
    sim: SimPty
    root: Path
    port: Port
    driver: FramedDriver


@asynccontextmanager
async def framed_unit(tmp_path: Path, misbehaviour: Misbehaviour | None = None,
                      baud: int | None = None, capacity: int = 1 << 20,
                      settings: FramedSettings = FAST) -> AsyncIterator[Rig]:
    sim = SimPty(baud=baud, misbehaviour=misbehaviour)
    root = tmp_path / "unit"
    root.mkdir()
    task = asyncio.create_task(run_framed_unit(sim, root, IDENTITY, capacity=capacity))
    port = await open_port(sim.path, 115200)
    try:
        yield Rig(sim, root, port, FramedDriver(port, settings))
    finally:
        await port.close()
        sim.hangup()
        await asyncio.wait_for(task, 2)  # the unit ends cleanly when unplugged, or re-raises


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def ask(port: Port, request: Frame) -> Frame:
    """One raw request and its reply, below the driver."""
    await port.write(request.encode())
    decoder = FrameDecoder()
    while True:
        for event in decoder.feed(await port.read_exactly(decoder.wanted, 1)):
            assert isinstance(event, Frame)
            return event


async def test_hello_identifies_the_unit(tmp_path: Path) -> None:
    async with framed_unit(tmp_path) as rig:
        assert await rig.driver.present()
        await rig.driver.wake()
        assert await rig.driver.identify() == IDENTITY


async def test_write_verify_and_read_back_a_file(tmp_path: Path) -> None:
    data = os.urandom(3000)
    async with framed_unit(tmp_path) as rig:
        (rig.root / "etc" / "factory").mkdir(parents=True)
        (rig.root / "etc" / "factory" / "device.json5").write_bytes(b"old, longer contents" * 200)
        await rig.driver.wake()
        await rig.driver.write_file(DEVICE_FILE, data)
        assert await rig.driver.verify_file(DEVICE_FILE, data) == Verification(
            "sha256", hashlib.sha256(data).hexdigest(), 3000)
        assert await rig.driver.read_file(DEVICE_FILE) == data
        await rig.driver.write_file("empty", b"")
        assert (await rig.driver.verify_file("empty", b"")).size == 0
        assert rig.driver.resends == 0
    stored = rig.root / "etc" / "factory" / "device.json5"
    assert stored.read_bytes() == data
    assert mode(stored) == 0o600 and mode(rig.root / "empty") == 0o600
    assert sorted(p.name for p in stored.parent.iterdir()) == ["device.json5"]  # no temp left


async def test_a_paced_line_carries_a_file_in_chunks(tmp_path: Path) -> None:
    # At 115200 baud replies arrive in pieces; SimPty.write also holds the unit ~0.1 s per
    # reply, so this test keeps its round trips few.
    data = os.urandom(3000)
    settings = FramedSettings(timeout=1.0, retries=0, chunk_size=1024)
    async with framed_unit(tmp_path, baud=115200, settings=settings) as rig:
        await rig.driver.write_file("paced.bin", data)
        await rig.driver.verify_file("paced.bin", data)
    assert (rig.root / "paced.bin").read_bytes() == data


async def test_a_resent_request_is_answered_without_acting_twice(tmp_path: Path) -> None:
    async with framed_unit(tmp_path) as rig:
        assert (await ask(rig.port, Frame(1, Op.PUT, payload=Put("f", 0, b"abc").encode()))
                ).payload == Count(3).encode()
        second = Frame(2, Op.PUT, payload=Put("f", 3, b"def").encode())
        assert await ask(rig.port, second) == await ask(rig.port, second)
        # Past the cache (a new seq), the offset still puts a repeated chunk in its place.
        third = await ask(rig.port, Frame(3, Op.PUT, payload=Put("f", 3, b"def").encode()))
        assert third.payload == Count(6).encode()
        commit = Frame(4, Op.COMMIT, payload=Commit("f", 6).encode())
        first = await ask(rig.port, commit)
        assert first.status == Status.OK and await ask(rig.port, commit) == first
        # The same command under a new seq is a new request: that upload is already committed.
        again = await ask(rig.port, Frame(5, Op.COMMIT, payload=Commit("f", 6).encode()))
        assert (again.op, again.status) == (Op.COMMIT | REPLY, Status.NOT_FOUND)
    assert (rig.root / "f").read_bytes() == b"abcdef"


async def test_a_silent_unit_times_out(tmp_path: Path) -> None:
    async with framed_unit(tmp_path, Misbehaviour(silent=True), settings=SHORT) as rig:
        assert not await rig.driver.present()
        with pytest.raises(UnitTimeout, match=r"did not answer HELLO within 0\.15 s"):
            await rig.driver.wake()
        assert rig.driver.resends == SHORT.retries


async def test_garbage_on_the_line_is_a_protocol_error(tmp_path: Path) -> None:
    async with framed_unit(tmp_path, Misbehaviour(garbage=True), settings=SHORT) as rig:
        with pytest.raises(ProtocolError, match="garbled 3 of 3 times"):
            await rig.driver.wake()


async def test_one_corrupted_reply_is_resent_and_not_applied_twice(tmp_path: Path) -> None:
    data = os.urandom(700)
    async with framed_unit(tmp_path) as rig:
        await rig.driver.wake()
        rig.sim.misbehaviour.corrupt_next = 1  # the first PUT's reply
        await rig.driver.write_file("f.bin", data)
        assert rig.driver.resends == 1
        await rig.driver.verify_file("f.bin", data)
    assert (rig.root / "f.bin").read_bytes() == data


async def test_corruption_on_every_reply_is_a_protocol_error(tmp_path: Path) -> None:
    async with framed_unit(tmp_path, Misbehaviour(corrupt_next=1000)) as rig:
        with pytest.raises(ProtocolError, match="bad CRC"):
            await rig.driver.wake()
        assert rig.driver.resends == FAST.retries


async def test_a_late_reply_to_an_earlier_try_is_ignored(tmp_path: Path) -> None:
    async with framed_unit(tmp_path) as rig:
        await rig.driver.wake()
        impostor = Hello(1, 64, "other", "02:00:00:99:99:99", "old")
        # A duplicate answer to the request just made lands on the line before the next one.
        await rig.sim.write(Frame(rig.driver._seq, Op.HELLO | REPLY,
                                  payload=impostor.encode()).encode())
        assert await rig.driver.identify() == IDENTITY


async def test_a_false_frame_start_on_the_line_is_given_up(tmp_path: Path) -> None:
    async with framed_unit(tmp_path) as rig:
        # Noise that looks like the header of a 4000-byte frame, ahead of the real reply.
        await rig.sim.write(MAGIC + b"\x00\x00\x81\x00" + bytes.fromhex("0fa0f05f"))
        assert await rig.driver.identify() == IDENTITY
        assert rig.driver.resends == 1


async def test_unplugged_mid_write_is_unit_gone_and_leaves_no_file(tmp_path: Path) -> None:
    async with framed_unit(tmp_path, Misbehaviour(hangup_after_bytes=1000)) as rig:
        await rig.driver.wake()
        with pytest.raises(UnitGone):
            await rig.driver.write_file("f.bin", os.urandom(4000))
        assert rig.sim.closed
        with pytest.raises(UnitGone):  # not False: the fixture must reopen the port
            await rig.driver.present()
    assert list(rig.root.iterdir()) == []


async def test_corrupt_storage_fails_the_commit_and_verification(tmp_path: Path) -> None:
    data = b"uci=01H4R15D3Q7K9M2X8Z5V6W4T0N\n" * 10
    ours = hashlib.sha256(data).hexdigest()
    async with framed_unit(tmp_path, Misbehaviour(corrupt_storage=True)) as rig:
        with pytest.raises(VerifyMismatch) as at_commit:
            await rig.driver.write_file(DEVICE_FILE, data)
        stored = (rig.root / DEVICE_FILE.lstrip("/")).read_bytes()
        assert stored != data and len(stored) == len(data)
        with pytest.raises(VerifyMismatch) as at_verify:
            await rig.driver.verify_file(DEVICE_FILE, data)
    theirs = hashlib.sha256(stored).hexdigest()
    for caught in (at_commit, at_verify):
        assert theirs in caught.value.reason and ours in caught.value.reason


async def test_paths_escaping_the_root_are_refused(tmp_path: Path) -> None:
    async with framed_unit(tmp_path) as rig:
        (tmp_path / "outside").mkdir()
        (rig.root / "link").symlink_to(tmp_path / "outside")
        # Any `..` is refused, even one that stays inside: firmware need not resolve paths.
        for path in ("../escape", "/etc/../../escape", "etc/../inside", "link/escape", ""):
            with pytest.raises(UnitRefused, match="path is not allowed"):
                await rig.driver.write_file(path, b"x")
        with pytest.raises(UnitRefused, match="no such file"):
            await rig.driver.verify_file("/missing", b"x")
    assert list((tmp_path / "outside").iterdir()) == []
    assert not (tmp_path / "escape").exists()


async def test_a_full_unit_says_so(tmp_path: Path) -> None:
    async with framed_unit(tmp_path, capacity=500) as rig:
        with pytest.raises(UnitRefused, match="no space left"):
            await rig.driver.write_file("big", b"x" * 600)
    assert not (rig.root / "big").exists()
