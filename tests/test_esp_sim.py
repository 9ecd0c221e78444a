"""The simulated ESP ROM bootloader, refereed by the official esptool command line (unchanged,
in its own process) over a real pseudo-terminal; and its wire format with plain values."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.testbed.sim.esp import FLASH_SIZE, EspFaults, run_esp_unit
from factory.testbed.sim.esp_chips import CHIPS
from factory.testbed.sim.esp_wire import (
    Command,
    SlipDecoder,
    WireError,
    checksum,
    parse_request,
    response,
    slip,
)
from factory.testbed.sim.pty import Misbehaviour, SimPty

MAC = bytes.fromhex("7cdfa100033b")


@dataclass
class Chip:
    sim: SimPty
    root: Path


@asynccontextmanager
async def esp_chip(tmp_path: Path, chip: str = "esp32c3", faults: EspFaults | None = None,
                   misbehaviour: Misbehaviour | None = None,
                   baud: int | None = None) -> AsyncIterator[Chip]:
    sim = SimPty(baud=baud, misbehaviour=misbehaviour)
    root = tmp_path / "unit"
    task = asyncio.create_task(run_esp_unit(sim, root, CHIPS[chip], MAC, faults))
    try:
        yield Chip(sim, root)
    finally:
        sim.hangup()
        await asyncio.wait_for(task, 5)


async def esptool(port: str, *args: str, timeout: float = 120) -> tuple[int, str]:
    """The esptool command line, as a user runs it (no modem lines on a pty: no reset)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esptool", "--port", port, "--before", "no-reset",
        "--after", "no-reset", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


@pytest.mark.parametrize(("chip", "name"), [("esp32", "ESP32"), ("esp32c3", "ESP32-C3"),
                                            ("esp32s3", "ESP32-S3")])
async def test_esptool_detects_the_chip_and_reads_its_mac(tmp_path, chip, name):
    async with esp_chip(tmp_path, chip) as unit:
        code, out = await esptool(unit.sim.path, "chip-id")
        assert code == 0, out
        assert f"Detecting chip type... {name}\n" in out
        assert "MAC:                7c:df:a1:00:03:3b" in out
        code, out = await esptool(unit.sim.path, "read-mac")
        assert code == 0, out
        assert "7c:df:a1:00:03:3b" in out


async def test_write_verify_and_read_flash_through_the_stub(tmp_path):
    image = tmp_path / "image.bin"
    data = os.urandom(9000) + b"factory" * 3000  # part incompressible, part compressible
    image.write_bytes(data)
    async with esp_chip(tmp_path, baud=115200) as unit:
        code, out = await esptool(unit.sim.path, "-b", "460800", "write-flash", "0x340000",
                                  str(image))
        assert code == 0, out
        assert "Hash of data verified." in out
        assert "Changing baud rate to 460800" in out
        code, out = await esptool(unit.sim.path, "verify-flash", "0x340000", str(image))
        assert code == 0, out
        assert "Verification successful (digest matched)." in out
        back = tmp_path / "back.bin"
        code, out = await esptool(unit.sim.path, "read-flash", "0x340000", str(len(data)),
                                  str(back))
        assert code == 0, out
        assert back.read_bytes() == data
    flash = (unit.root / "flash.bin").read_bytes()
    assert len(flash) == FLASH_SIZE
    assert flash[0x340000:0x340000 + len(data)] == data
    assert flash[:0x340000] == b"\xff" * 0x340000  # the rest is still erased


async def test_the_flash_is_kept_across_restarts_and_the_rom_writes_without_the_stub(tmp_path):
    image = tmp_path / "image.bin"
    image.write_bytes(b"\x00\x01" * 3000)
    async with esp_chip(tmp_path, "esp32") as unit:
        code, out = await esptool(unit.sim.path, "--no-stub", "write-flash", "0x9000",
                                  str(image))
        assert code == 0, out
    async with esp_chip(tmp_path, "esp32") as unit:  # the same folder: a unit re-plugged
        code, out = await esptool(unit.sim.path, "verify-flash", "0x9000", str(image))
        assert code == 0, out


async def test_a_chip_that_never_syncs_fails_esptool_connect(tmp_path):
    async with esp_chip(tmp_path, misbehaviour=Misbehaviour(silent=True)) as unit:
        code, out = await esptool(unit.sim.path, "--connect-attempts", "1", "chip-id")
    assert code != 0
    assert "Failed to connect" in out


async def test_a_corrupt_frame_is_survived_by_esptool_retrying(tmp_path):
    async with esp_chip(tmp_path, misbehaviour=Misbehaviour(corrupt_next=1)) as unit:
        code, out = await esptool(unit.sim.path, "read-mac")
    assert code == 0, out
    assert "7c:df:a1:00:03:3b" in out


@pytest.mark.parametrize(("faults", "words"), [
    (EspFaults(wrong_md5=True), "MD5 of file does not match data in flash"),
    (EspFaults(write_protected=True), "Failed to"),
    (EspFaults(corrupt_storage=True), "MD5 of file does not match data in flash"),
])
async def test_flash_faults_fail_write_flash(tmp_path, faults, words):
    image = tmp_path / "image.bin"
    image.write_bytes(b"abc" * 1000)
    async with esp_chip(tmp_path, faults=faults) as unit:
        code, out = await esptool(unit.sim.path, "write-flash", "0x9000", str(image))
    assert code != 0
    assert words in out


async def test_unplugged_mid_flash_fails_write_flash(tmp_path):
    image = tmp_path / "image.bin"
    image.write_bytes(os.urandom(5000))
    async with esp_chip(tmp_path, faults=EspFaults(hangup_mid_flash=True)) as unit:
        # esptool reopens its port after a lost connection. A pty's number is free again
        # once hung up, and another test's chip may get it: esptool reaches the chip through
        # a link that goes with the unit, as a USB adapter's /dev/serial/by-id/ name does.
        link = tmp_path / "port"
        link.symlink_to(unit.sim.path)

        async def unplug_link() -> None:
            while not unit.sim.closed:
                await asyncio.sleep(0.005)
            link.unlink()

        watcher = asyncio.create_task(unplug_link())
        code, out = await esptool(str(link), "write-flash", "0x9000", str(image))
        await asyncio.wait_for(watcher, 5)
    assert code != 0, out


# The wire, with plain values.

def test_slip_escapes_end_and_esc_and_decodes_back():
    payload = bytes([0x00, 0xC0, 0x01, 0xDB, 0xDB, 0xC0])
    frame = slip(payload)
    assert frame == bytes([0xC0, 0x00, 0xDB, 0xDC, 0x01, 0xDB, 0xDD, 0xDB, 0xDD, 0xDB, 0xDC,
                           0xC0])
    decoder = SlipDecoder()
    assert decoder.feed(b"boot log\r\n" + frame[:5]) == []  # noise first, a frame in halves
    assert decoder.feed(frame[5:] + slip(b"x")) == [payload, b"x"]


def test_a_bad_escape_drops_its_frame_only():
    decoder = SlipDecoder()
    assert decoder.feed(b"\xc0ab\xdb\x00c\xc0" + slip(b"ok")) == [b"ok"]
    assert decoder.dropped == 1


def test_requests_parse_and_responses_pack():
    data = bytes(range(20))
    frame = bytes([0x00, Command.FLASH_DATA, 20, 0, 0xEF, 0, 0, 0]) + data
    request = parse_request(frame)
    assert (request.command, request.data, request.checksum) == (Command.FLASH_DATA, data,
                                                                 0xEF)
    with pytest.raises(WireError, match="header says 21"):
        parse_request(frame[:2] + bytes([21]) + frame[3:])
    with pytest.raises(WireError, match="not a request"):
        parse_request(b"\x01" + frame[1:])
    assert response(Command.READ_REG, 0x12345678) == bytes(
        [0x01, 0x0A, 4, 0, 0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0])
    assert response(Command.SYNC, error=0xC1, status_bytes=2) == bytes(
        [0x01, 0x08, 2, 0, 0, 0, 0, 0, 1, 0xC1])


def test_checksum_is_the_roms_xor_from_0xef():
    assert checksum(b"") == 0xEF
    assert checksum(b"\xef") == 0
    assert checksum(bytes([1, 2, 4])) == 0xEF ^ 7


def test_mac_words_read_back_as_esptool_assembles_them():
    for name in ("esp32c3", "esp32s3"):
        chip = CHIPS[name]
        regs = chip.mac_words(MAC)
        mac0, mac1 = regs[chip.mac_reg], regs[chip.mac_reg + 4]
        assert (mac1.to_bytes(4, "big") + mac0.to_bytes(4, "big"))[2:] == MAC
    esp32 = CHIPS["esp32"]
    regs = esp32.mac_words(MAC)
    w1, w2 = regs[esp32.mac_reg + 4], regs[esp32.mac_reg + 8]
    assert (w2.to_bytes(4, "big") + w1.to_bytes(4, "big"))[2:8] == MAC
