"""Native ZPL labels printed by the running station: through a CUPS raw queue (`lp -o raw`)
and straight to a printer's raw port (`[printer] socket`), a TCP listener on 127.0.0.1
standing in for port 9100. What arrives is the kept ZPL, byte for byte; a printer that is off
keeps the label queued until it is back; a crash after the send does not print it twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from factory.config import StationConfig, load
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.labels.making import LabelMaker
from factory.labels.print_queue import PrintQueue
from factory.labels.printers.kinds import label_printer
from factory.labels.printers.socket.printer import SocketPrinter
from factory.labels.products import ProductLabels
from tests.conftest import PRODUCT
from tests.cups import Device, private_cups
from tests.processes import station_process
from tests.test_fixtures import plugged, read_device
from tests.test_label_scans_crash import events
from tests.test_labels_station import CLAIM_URL, kinds, provision, station_config, until_state
from tests.zpl_reading import symbols, zpl_image

pytestmark = pytest.mark.slow


def claim_of(zpl: bytes) -> list[str]:
    """The QR a printer draws from this ZPL (50 x 30 mm at 203 dpi)."""
    return [s.text for s in symbols(zpl_image(zpl, 400, 240, 203)) if s.format == "QRCode"]


@contextlib.asynccontextmanager
async def zpl_station(tmp_path: Path, printer: str, *, worker: bool = True) -> AsyncIterator[
        tuple[StationConfig, Journal, LabelMaker, PrintQueue]]:
    config = load(station_config(tmp_path, f'\n[printer]\nlanguage = "zpl"\n{printer}'))
    journal = await open_journal(config.journal, config.station_id)
    queue = PrintQueue(config.printer, journal, label_printer(config.printer))
    labels = LabelMaker(config, journal, ProductLabels(config), wake=queue.wake)
    task = asyncio.create_task(queue.run_forever()) if worker else None
    try:
        yield config, journal, labels, queue
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await journal.close()


async def kept_zpl(journal: Journal, uci: str) -> Path:
    labelled = [e for e in (await journal.unit(uci)).events if e.kind == "labelled"][-1]
    assert Path(labelled.data["pdf"]).exists()  # the PDF is kept for people to open
    path = Path(labelled.data["zpl"])
    assert path.suffix == ".zpl" and path.stat().st_mode & 0o777 == 0o600
    return path


async def test_zpl_through_a_cups_raw_queue(tmp_path: Path) -> None:
    async with private_cups(tmp_path) as cups, zpl_station(
            tmp_path, f'queue = "{cups.queue}"\nserver = "{cups.server}"\n') as (
            config, journal, labels, _):
        uci = await provision(config, journal, labels, "02:00:00:00:00:21")
        await until_state(journal, uci, "printed")
        [job] = await cups.device.wait_jobs(1)
        assert job == (await kept_zpl(journal, uci)).read_bytes()
        assert claim_of(job) == [CLAIM_URL.format(uci=uci)]


async def test_zpl_passes_a_queue_with_the_zebra_driver_unfiltered(tmp_path: Path) -> None:
    """`lp -o raw`: the queue's own driver would otherwise rasterise the ZPL as text."""
    zebra = Device()
    await zebra.start()
    try:
        async with private_cups(tmp_path) as cups, zpl_station(
                tmp_path, f'queue = "zebra"\nserver = "{cups.server}"\n') as (
                config, journal, labels, _):
            await cups.add_queue("zebra", f"socket://127.0.0.1:{zebra.port}",
                                 "drv:///sample.drv/zebra.ppd")
            uci = await provision(config, journal, labels, "02:00:00:00:00:24")
            await until_state(journal, uci, "printed")
            [job] = await zebra.wait_jobs(1)
            assert job == (await kept_zpl(journal, uci)).read_bytes()
    finally:
        await zebra.stop()


async def test_zpl_to_a_raw_port_waits_out_a_printer_that_is_off(tmp_path: Path) -> None:
    zebra = Device()  # port 9100 of a Zebra, switched off for now
    async with zpl_station(tmp_path, f'socket = "127.0.0.1:{zebra.port}"\n') as (
            config, journal, labels, queue):
        uci = await provision(config, journal, labels, "02:00:00:00:00:22")
        async with asyncio.timeout(10):
            while queue.printer_state != "unavailable":
                await asyncio.sleep(0.05)
        assert (await journal.unit(uci)).state == "labelled"
        assert f"127.0.0.1:{zebra.port}" in queue.printer_reason
        await zebra.start()
        try:
            await until_state(journal, uci, "printed", 40)
            [job] = await zebra.wait_jobs(1)
            assert job == (await kept_zpl(journal, uci)).read_bytes()
            assert claim_of(job) == [CLAIM_URL.format(uci=uci)]
            printed = [e for e in (await journal.unit(uci)).events if e.kind == "printed"]
            assert printed[0].actor == f"printer:127.0.0.1:{zebra.port}"
            await asyncio.sleep(0.5)
            assert len(zebra.jobs) == 1
        finally:
            await zebra.stop()


async def test_a_crash_after_sending_to_a_raw_port_does_not_print_twice(
        tmp_path: Path) -> None:
    zebra = Device()
    await zebra.start()
    try:
        async with zpl_station(tmp_path, f'socket = "127.0.0.1:{zebra.port}"\n',
                               worker=False) as (config, journal, labels, _):
            uci = await provision(config, journal, labels, "02:00:00:00:00:23")
            title = f"label {uci} 1"
            # The station journaled that it was sending, sent, then died before journaling
            # the send; the next start's queue finds the send instead of sending again.
            await journal.record(uci, "print_submitting", f"printer:{config.printer.name}",
                                 {"queue": config.printer.name, "copy": 1, "title": title})
            await SocketPrinter(config.printer).submit(await kept_zpl(journal, uci), title)
            await zebra.wait_jobs(1)
            restarted = PrintQueue(config.printer, journal, label_printer(config.printer))
            await restarted.print_unit(uci)
            events = (await journal.unit(uci)).events
            assert [e.data["adopted"] for e in events if e.kind == "print_submitted"] == [True]
            assert (await kinds(journal, uci))[-1] == "printed"
            assert await journal.labels_owed() == []
            await asyncio.sleep(0.3)
            assert len(zebra.jobs) == 1
    finally:
        await zebra.stop()


async def test_a_station_killed_after_sending_to_a_raw_port_prints_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL (failpoint `print.submitted`) right after the label went to port 9100, before
    the journal heard of it: the restarted station adopts the send, nothing prints twice."""
    zebra = Device()
    await zebra.start()
    config = station_config(tmp_path, f"""
[printer]
language = "zpl"
socket = "127.0.0.1:{zebra.port}"

[[fixtures]]
name = "f1"
port = "f1.tty"
driver = "framed"
product = "{PRODUCT}"
poll_interval = 0.05
""")
    try:
        async with plugged(tmp_path / "f1.tty", tmp_path / "unit", "02:00:00:00:00:25"):
            monkeypatch.setenv("FACTORY_FAILPOINTS", "print.submitted")
            async with station_process(config) as (proc, _):
                async with asyncio.timeout(30):
                    assert await proc.wait() == -9  # killed at the failpoint
            [job] = await zebra.wait_jobs(1)
            uci = read_device(tmp_path / "unit")["id"]
            assert "print_submitted" not in events(config, uci)
            monkeypatch.delenv("FACTORY_FAILPOINTS")
            async with station_process(config):
                async with asyncio.timeout(30):
                    while "printed" not in events(config, uci):
                        await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert zebra.jobs == [job] and claim_of(job) == [CLAIM_URL.format(uci=uci)]
        kinds_seen = events(config, uci)
        assert kinds_seen.count("print_submitting") == 1 and kinds_seen.count("printed") == 1
    finally:
        await zebra.stop()
