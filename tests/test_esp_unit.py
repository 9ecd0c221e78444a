"""The esptool driver (esptool's Python API in a worker thread) through the real pipeline and
journal against the simulated ESP ROM bootloader on a real pseudo-terminal; the NVS image
from Espressif's generator read back by our reader."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType

import pytest

from factory.config import Product
from factory.config.drivers import EsptoolSettings
from factory.config.nvs import NvsEntry, NvsLayout
from factory.journal.interface import Journal
from factory.testbed.sim.esp import EspFaults, run_esp_unit
from factory.testbed.sim.esp_chips import CHIPS
from factory.testbed.sim.pty import Misbehaviour, SimPty
from factory.units import esp_nvs
from factory.units.errors import (
    NotInBootloader,
    ProtocolError,
    UnitGone,
    VerifyMismatch,
)
from factory.units.esp import EsptoolDriver
from factory.units.pipeline import DEFAULT_STEPS, Pipeline, UnitRun

from .conftest import PRODUCT

MAC = bytes.fromhex("7cdfa100033b")
SIM = EsptoolSettings(before="no-reset", after="no-reset", flash_baud=460800,
                      connect_attempts=1)
LAYOUT = NvsLayout(offset=0x340000, size=0x6000, namespace="fctry",
                   entries=(NvsEntry("claim_url", "string", "https://claim.example.com/{uci}"),))
AIR = Product(id=PRODUCT, name="Acme Air Sensor", model="AQ-100",
              fields=MappingProxyType({"hw_rev": 3, "region": "EU"}), nvs=LAYOUT)


@asynccontextmanager
async def esp_unit(root: Path, faults: EspFaults | None = None,
                   misbehaviour: Misbehaviour | None = None,
                   mac: bytes = MAC) -> AsyncIterator[SimPty]:
    sim = SimPty(baud=115200, misbehaviour=misbehaviour)
    task = asyncio.create_task(run_esp_unit(sim, root, CHIPS["esp32c3"], mac, faults))
    try:
        yield sim
    finally:
        sim.hangup()
        await asyncio.wait_for(task, 5)


async def provision(journal: Journal, sim: SimPty, product: Product = AIR) -> UnitRun:
    driver = EsptoolDriver(sim.path, 115200, SIM)
    assert await driver.present()
    run = UnitRun("f1", product, "unused")
    return await Pipeline(journal, DEFAULT_STEPS).provision(run, driver)


def partition(root: Path, layout: NvsLayout = LAYOUT) -> bytes:
    flash = (root / "flash.bin").read_bytes()
    return flash[layout.offset:layout.offset + layout.size]


async def test_a_unit_is_identified_flashed_and_verified_twice(tmp_path, journal):
    root = tmp_path / "unit"
    async with esp_unit(root) as sim:
        run = await provision(journal, sim)
    assert run.uci is not None
    assert run.hardware_id == "7CDFA100033B"
    assert run.identity is not None and run.identity.model == "ESP32-C3"
    held = esp_nvs.read_image(partition(root))
    assert held == {"fctry": {"uci": run.uci, "product": PRODUCT, "hw_rev": 3, "region": "EU",
                              "claim_url": f"https://claim.example.com/{run.uci}"}}
    unit = await journal.unit(run.uci)
    written, verified = unit.last("written"), unit.last("verified")
    assert written is not None and verified is not None
    assert written.data["sha256"] == hashlib.sha256(partition(root)).hexdigest()
    assert written.data["path"] == "nvs:fctry@0x340000"
    assert verified.data["algorithm"] == "md5+nvs-readback"
    assert verified.data["digest"] == hashlib.md5(partition(root)).hexdigest()


async def test_a_replugged_unit_keeps_its_uci_and_is_only_rechecked(tmp_path, journal):
    root = tmp_path / "unit"
    async with esp_unit(root) as sim:
        first = await provision(journal, sim)
    async with esp_unit(root) as sim:  # the same chip (same flash) plugged in again
        again = await provision(journal, sim)
    assert again.uci == first.uci
    assert again.already_done
    kinds = [e.kind for e in (await journal.unit(first.uci or "")).events]
    assert kinds.count("written") == kinds.count("verified") == 1


async def test_a_chip_that_never_syncs_is_not_present(tmp_path):
    async with esp_unit(tmp_path / "unit", misbehaviour=Misbehaviour(silent=True)) as sim:
        driver = EsptoolDriver(sim.path, 115200, SIM)
        assert not await driver.present()
        assert isinstance(driver.silence, NotInBootloader)
        assert "hold BOOT" in driver.silence.action
        with pytest.raises(NotInBootloader, match="no chip answers its ROM bootloader"):
            await driver.identify()


async def test_a_port_that_starts_a_frame_and_never_ends_it_is_noise_not_a_hang(tmp_path):
    """A device that sends 0xC0 and then bytes without end, as fast as the port takes them:
    esptool kept them all (at full CPU, its memory growing) until the flood stopped. It is
    noise after 64 KiB: no chip answers its ROM bootloader."""
    sim = SimPty(baud=None)
    flooded = 0

    async def flood() -> None:
        nonlocal flooded
        await sim.read()  # the driver's first sync
        await sim.write(b"\xc0")
        while flooded < 16 << 20:  # 16 MiB: minutes at full CPU for esptool as it was
            await sim.write(b"\x00" * 4096)
            flooded += 4096

    async def drain() -> None:
        while True:
            await sim.read()

    tasks = [asyncio.create_task(flood()), asyncio.create_task(drain())]
    try:
        driver = EsptoolDriver(sim.path, 115200, SIM)
        async with asyncio.timeout(60):  # as it was: still reading
            assert not await driver.present()
        assert isinstance(driver.silence, NotInBootloader)
        assert flooded < 16 << 20
    finally:
        sim.hangup()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize(("faults", "error", "words"), [
    (EspFaults(wrong_md5=True), VerifyMismatch, "the chip's MD5"),
    (EspFaults(corrupt_readback=True), VerifyMismatch, "read back"),
    (EspFaults(hangup_mid_flash=True), UnitGone, "went away"),
    (EspFaults(write_protected=True), ProtocolError, "esptool"),
])
async def test_faults_fail_the_unit_with_a_reason_and_an_action(tmp_path, journal, faults,
                                                                  error, words):
    async with esp_unit(tmp_path / "unit", faults) as sim:
        with pytest.raises(error, match=words) as caught:
            await provision(journal, sim)
    assert caught.value.action
    units, _ = await journal.units()
    assert len(units) == 1
    failed = (await journal.unit(units[0].uci)).last("failed")
    assert failed is not None
    assert failed.data["reason"] == caught.value.reason
    assert failed.data["action"] == caught.value.action


async def test_a_partition_too_small_fails_before_anything_is_written(tmp_path, journal):
    small = dataclasses.replace(LAYOUT, size=0x3000)
    product = dataclasses.replace(
        AIR, fields=MappingProxyType({f"note{i}": "x" * 3000 for i in range(3)}), nvs=small)
    root = tmp_path / "unit"
    async with esp_unit(root) as sim:
        with pytest.raises(esp_nvs.PartitionTooSmall, match="0x3000"):
            await provision(journal, sim, product)
    assert partition(root, small) == b"\xff" * small.size  # untouched


async def test_a_string_too_long_for_nvs_fails_its_unit_with_the_key_before_a_write(
        tmp_path, journal):
    product = dataclasses.replace(AIR, fields=MappingProxyType({"note": "x" * 4000}))
    root = tmp_path / "unit"
    async with esp_unit(root) as sim:
        with pytest.raises(esp_nvs.NvsValueTooLong, match=r"fctry\.note is a string of 4000"):
            await provision(journal, sim, product)
    assert partition(root, LAYOUT) == b"\xff" * LAYOUT.size  # untouched
    units, _ = await journal.units()
    failed = (await journal.unit(units[0].uci)).last("failed")
    assert failed is not None and failed.data["code"] == "nvs-value-too-long"


def test_the_nvs_reader_reads_what_espressifs_generator_wrote():
    layout = dataclasses.replace(LAYOUT, entries=(
        NvsEntry("blob", "hex2bin", "00ff" * 2500), NvsEntry("b64", "base64", "aGVsbG8="),
        NvsEntry("small", "u8", "200"), NvsEntry("neg", "i64", "-5")))
    product = dataclasses.replace(AIR, nvs=layout, fields=MappingProxyType(
        {"beta": True, "ratio": 1.5, "big": 2**40}))
    items = esp_nvs.entries(product, "7KQ2M9XD3FHT0W5RW")
    image = esp_nvs.build_image(layout, items)
    assert len(image) == layout.size
    assert esp_nvs.read_image(image) == esp_nvs.meant(layout, items)
    assert esp_nvs.read_image(image)["fctry"]["blob"] == b"\x00\xff" * 2500  # across pages
    assert esp_nvs.read_image(image)["fctry"]["ratio"] == "1.5"
    used = esp_nvs.used_pages(image)  # what the driver reads back (the MD5 covers the rest)
    assert used == 2 * esp_nvs.PAGE and image[used:] == b"\xff" * (len(image) - used)
    assert esp_nvs.read_image(image[:used]) == esp_nvs.meant(layout, items)
    damaged = bytearray(image)
    damaged[64 + 32 * 1 + 10] ^= 0x01  # a key byte of the first entry after the namespace
    with pytest.raises(esp_nvs.NvsError, match="CRC mismatch"):
        esp_nvs.read_image(bytes(damaged))


async def test_two_esptool_fixtures_provision_their_units_at_once(tmp_path, journal):
    from factory.config import Fixture
    from factory.units.fixture import FixtureRunner

    roots = [tmp_path / "a", tmp_path / "b"]
    async with esp_unit(roots[0]) as first, esp_unit(roots[1], mac=b"\x02" * 6) as second:
        runners = [FixtureRunner(Fixture(name=f"f{i}", port=sim.path, driver="esptool",
                                         product=PRODUCT, poll_interval=0.1, esptool=SIM),
                                 AIR, journal)
                   for i, sim in enumerate((first, second))]
        for runner in runners:
            runner.start()
        async with asyncio.timeout(60):
            while not all(r.status.done for r in runners):
                await asyncio.sleep(0.05)
        for runner in runners:
            runner.stop()
            await runner.abandon()
    ucis = {esp_nvs.read_image(partition(root))["fctry"]["uci"] for root in roots}
    assert len(ucis) == 2
    for uci in ucis:
        assert (await journal.unit(str(uci))).state == "verified"
