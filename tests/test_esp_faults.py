"""ESP32 units that misbehave, each on one of two esptool fixtures running side by side: the
faulty unit fails with a reason and an action on its fixture and in the journal, the other
fixture's unit is provisioned all the same, and a failed unit plugged in again keeps its UCI.
A verified unit left in its fixture is left alone. Simulated ESP32-C3s on real
pseudo-terminals, unpaced."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from factory.config import Fixture, Product
from factory.config.drivers import EsptoolSettings
from factory.journal.interface import Journal
from factory.testbed.sim.esp import EspFaults, run_esp_unit
from factory.testbed.sim.esp_chips import CHIPS
from factory.testbed.sim.pty import Misbehaviour, SimPty
from factory.units import esp_nvs
from factory.units.fixture import FixtureRunner
from tests.processes import until
from tests.test_esp_unit import AIR, SIM, partition

pytestmark = pytest.mark.slow
GOOD_MAC, BAD_MAC = bytes.fromhex("7cdfa1000001"), bytes.fromhex("7cdfa1000002")


@contextlib.asynccontextmanager
async def plugged(link: Path, root: Path, mac: bytes, faults: EspFaults | None = None,
                  misbehaviour: Misbehaviour | None = None) -> AsyncIterator[SimPty]:
    """A simulated ESP32-C3 on a new pty, reachable at `link` while plugged in."""
    sim = SimPty(baud=None, misbehaviour=misbehaviour)
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(sim.path)
    task = asyncio.create_task(run_esp_unit(sim, root, CHIPS["esp32c3"], mac, faults))
    try:
        yield sim
    finally:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        sim.hangup()
        await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def fixture(journal: Journal, name: str, link: Path, product: Product = AIR,
                  settings: EsptoolSettings = SIM) -> AsyncIterator[FixtureRunner]:
    spec = Fixture(name=name, port=str(link), driver="esptool", product=product.id,
                   poll_interval=0.05, esptool=settings)
    runner = FixtureRunner(spec, product, journal)
    task = asyncio.create_task(runner.run_forever())
    try:
        yield runner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def events(journal: Journal, kind: str) -> list[dict[str, Any]]:
    return [e.data async for e in journal.events() if e.kind == kind]


TOO_SMALL = dataclasses.replace(
    AIR, fields=MappingProxyType({f"note{i}": "x" * 3000 for i in range(3)}),
    nvs=dataclasses.replace(AIR.nvs, size=0x3000))


@pytest.mark.parametrize(("faults", "product", "code", "words"), [
    (EspFaults(hangup_mid_flash=True), AIR, "unplugged", "went away"),
    (EspFaults(wrong_md5=True), AIR, "verify-mismatch", "the chip's MD5"),
    (EspFaults(corrupt_readback=True), AIR, "verify-mismatch", "read back"),
    (None, TOO_SMALL, "partition-too-small", "0x3000"),
], ids=["unplug-mid-flash", "md5-mismatch", "readback-mismatch", "partition-too-small"])
async def test_a_faulty_unit_fails_alone(tmp_path: Path, sqlite_journal: Journal,
                                         faults: EspFaults | None, product: Product,
                                         code: str, words: str) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    async with plugged(tmp_path / "good.tty", good, GOOD_MAC), \
            plugged(tmp_path / "bad.tty", bad, BAD_MAC, faults), \
            fixture(sqlite_journal, "f-good", tmp_path / "good.tty") as fine, \
            fixture(sqlite_journal, "f-bad", tmp_path / "bad.tty", product) as broken:
        await until(lambda: fine.status.done == 1 and broken.status.failed == 1, 30,
                    "one unit done, the other failed")
        assert broken.status.state in ("failed", "port-error")  # unplugged: no port either
        (failed,) = await events(sqlite_journal, "failed")
    assert failed["code"] == code and words in failed["reason"] and failed["action"]
    good_uci = esp_nvs.read_image(partition(good))["fctry"]["uci"]
    assert (await sqlite_journal.unit(str(good_uci))).state == "verified"
    units, _ = await sqlite_journal.units(state="failed")
    assert len(units) == 1 and units[0].hardware_id == BAD_MAC.hex().upper()
    if code == "partition-too-small":  # refused before anything was written
        assert partition(bad, TOO_SMALL.nvs) == b"\xff" * TOO_SMALL.nvs.size


async def test_a_unit_not_in_its_bootloader_is_shown_on_its_fixture_once(
        tmp_path: Path, sqlite_journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    async with plugged(tmp_path / "good.tty", tmp_path / "good", GOOD_MAC), \
            plugged(tmp_path / "bad.tty", tmp_path / "bad", BAD_MAC,
                    misbehaviour=Misbehaviour(silent=True)), \
            fixture(sqlite_journal, "f-good", tmp_path / "good.tty") as fine, \
            fixture(sqlite_journal, "f-bad", tmp_path / "bad.tty") as silent:
        await until(lambda: fine.status.done == 1 and bool(silent.status.reason), 30,
                    "one unit done, the other fixture saying why it waits")
        await asyncio.sleep(1.6)  # two more failed syncs: still said once
        assert silent.status.state == "waiting"
        assert "no chip answers its ROM bootloader" in silent.status.reason
        assert "hold BOOT" in silent.status.action
    said = [r for r in caplog.records if "no chip answers" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"
    assert await events(sqlite_journal, "fixture_failed") == []  # no unit failed: counted so
    units, _ = await sqlite_journal.units()
    assert len(units) == 1  # no UCI for a unit that never answered


async def test_a_unit_unplugged_mid_flash_keeps_its_uci_when_plugged_in_again(
        tmp_path: Path, sqlite_journal: Journal) -> None:
    link, root = tmp_path / "unit.tty", tmp_path / "unit"
    async with fixture(sqlite_journal, "f1", link) as runner:
        async with plugged(link, root, BAD_MAC, EspFaults(hangup_mid_flash=True)):
            await until(lambda: runner.status.failed == 1, 30, "the unit failed")
        async with plugged(link, root, BAD_MAC):  # the same chip, healthy this time
            await until(lambda: runner.status.done == 1, 30, "the unit done")
    units, _ = await sqlite_journal.units()
    assert len(units) == 1
    assert esp_nvs.read_image(partition(root))["fctry"]["uci"] == units[0].uci
    kinds = [e.kind for e in (await sqlite_journal.unit(units[0].uci)).events]
    assert kinds == ["issued", "failed", "written", "verified"]


async def test_a_verified_unit_left_running_its_application_is_left_alone(
        tmp_path: Path, sqlite_journal: Journal) -> None:
    """Reset into its application, the unit is not synced (nor reset) again every poll while
    it stays: only its port is looked at. Unplugged, the next unit is provisioned."""
    link = tmp_path / "unit.tty"
    soft = dataclasses.replace(SIM, after="soft-reset")
    async with fixture(sqlite_journal, "f1", link, settings=soft) as runner:
        async with plugged(link, tmp_path / "a", GOOD_MAC) as sim:
            await until(lambda: runner.status.done == 1, 30, "the first unit done")
            heard = sim.received
            await asyncio.sleep(0.5)  # ten polls
            assert sim.received == heard  # nothing sent to the application
            assert runner.status.state == "done" and runner.status.failed == 0
        async with plugged(link, tmp_path / "b", BAD_MAC):
            await until(lambda: runner.status.done == 2, 30, "the next unit done")
    units, _ = await sqlite_journal.units(state="verified")
    assert {u.hardware_id for u in units} == {GOOD_MAC.hex().upper(), BAD_MAC.hex().upper()}
