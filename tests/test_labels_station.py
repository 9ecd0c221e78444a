"""Labels in the running station: a label only after the device file verified, kept as PDF,
printed once on a real (private) CUPS queue, retried while the printer is down, reprints
journaled. Every QR is read back from the PDF with a real decoder."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from factory import uci as uci_codec
from factory.config import StationConfig, load
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.labels.making import Label, LabelMaker
from factory.labels.print_queue import PrintQueue
from factory.labels.printers.cups.lp import submit
from factory.labels.printers.kinds import label_printer
from factory.labels.products import ProductLabels
from factory.units.pipeline import DEFAULT_STEPS, Pipeline, UnitRun
from tests.conftest import CONFIG_TEXT, PRODUCT, ROOT, run_cli, write_config
from tests.cups import PrivateCups, private_cups
from tests.test_pipeline import MemoryUnit

pytestmark = pytest.mark.slow
CLAIM_URL = "https://claim.example.com/c/{uci}"


def station_config(folder: Path, printer: str = "") -> Path:
    text = CONFIG_TEXT.replace(
        'journal = "journal.sqlite"', f'journal = "journal.sqlite"\nlabels = "{ROOT}/labels"'
    ).replace('model = "AQ-100"',
              f'model = "AQ-100"\nlabel = "thermal-50x30"\nqr = "{CLAIM_URL}"')
    return write_config(folder, text + printer)


def qr_codes(pdf: Path) -> list[str]:
    """Every QR on every page, decoded by zbarimg from a 300 dpi rendering."""
    prefix = pdf.with_suffix("")
    subprocess.run(["pdftoppm", "-r", "300", "-png", str(pdf), str(prefix)], check=True)
    found = []
    for page in sorted(pdf.parent.glob(prefix.name + "-*.png")):
        out = subprocess.run(["zbarimg", "-q", "--raw", str(page)], capture_output=True,
                             text=True, check=False).stdout
        found += out.splitlines()
    return found


async def provision(config: StationConfig, journal: Journal, labels: LabelMaker,
                    mac: str, unit: MemoryUnit | None = None) -> str:
    product = config.product(PRODUCT)
    assert product is not None
    run = await Pipeline(journal, [*DEFAULT_STEPS, Label(labels)]).provision(
        UnitRun(fixture="f1", product=product, device_path="config/device.json5"),
        unit or MemoryUnit(hardware_id=mac))
    assert run.uci is not None
    return run.uci


async def kinds(journal: Journal, uci: str) -> list[str]:
    return [e.kind for e in (await journal.unit(uci)).events]


async def test_a_verified_unit_gets_its_label_kept_as_pdf(tmp_path: Path) -> None:
    config = load(station_config(tmp_path))
    journal = await open_journal(config.journal, config.station_id)
    try:
        labels = LabelMaker(config, journal, ProductLabels(config))
        device = MemoryUnit(hardware_id="02:00:00:00:00:01")
        uci = await provision(config, journal, labels, "", device)
        assert await kinds(journal, uci) == ["issued", "written", "verified", "labelled"]
        labelled = (await journal.unit(uci)).events[-1].data
        pdf = Path(labelled["pdf"])
        assert pdf.parent == tmp_path / "labels" and pdf.stat().st_mode & 0o777 == 0o600
        assert qr_codes(pdf) == [CLAIM_URL.format(uci=uci)]
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                              check=True).stdout
        assert uci_codec.human(uci) in text
        # Plugged in again: already done, no second label.
        again = await provision(config, journal, labels, "", device)
        assert again == uci and await kinds(journal, uci) == ["issued", "written",
                                                              "verified", "labelled"]
    finally:
        await journal.close()


@contextlib.asynccontextmanager
async def printing_station(tmp_path: Path, *, worker: bool = True) -> AsyncIterator[
        tuple[PrivateCups, StationConfig, Journal, LabelMaker, PrintQueue]]:
    """A private cupsd, a config printing to it, the journal, the label maker and the print
    queue, and (unless told not to) the queue's worker running."""
    async with private_cups(tmp_path) as cups:
        config = load(station_config(tmp_path, f"""
[printer]
queue = "{cups.queue}"
server = "{cups.server}"
"""))
        journal = await open_journal(config.journal, config.station_id)
        queue = PrintQueue(config.printer, journal, label_printer(config.printer))
        labels = LabelMaker(config, journal, ProductLabels(config), wake=queue.wake)
        task = asyncio.create_task(queue.run_forever()) if worker else None
        try:
            yield cups, config, journal, labels, queue
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await journal.close()


async def until_state(journal: Journal, uci: str, state: str, seconds: float = 20) -> None:
    async with asyncio.timeout(seconds):
        while (await journal.unit(uci)).state != state:
            await asyncio.sleep(0.05)


async def test_labels_print_once_and_wait_out_a_stopped_printer(tmp_path: Path) -> None:
    async with printing_station(tmp_path) as (cups, config, journal, labels, queue):
        first = await provision(config, journal, labels, "02:00:00:00:00:01")
        await until_state(journal, first, "printed")
        printed = await cups.device.wait_jobs(1)
        kept = Path((await journal.unit(first)).events[3].data["pdf"])
        assert printed[0] == kept.read_bytes()

        await cups.disable("out of labels")
        second = await provision(config, journal, labels, "02:00:00:00:00:02")
        await asyncio.sleep(1.5)  # the worker tries, finds the printer stopped, waits
        assert (await journal.unit(second)).state == "labelled"
        assert queue.printer_state == "unavailable" and "out of labels" in \
            queue.printer_reason
        third = await provision(config, journal, labels, "02:00:00:00:00:03")  # line goes on
        await cups.enable()
        await until_state(journal, second, "printed", 60)
        await until_state(journal, third, "printed", 60)
        jobs = await cups.device.wait_jobs(3)
        assert len(jobs) == 3
        assert (await journal.verify()).ok


async def test_a_label_waiting_for_the_printer_survives_the_unit_moving_on(
        tmp_path: Path) -> None:
    """The unit is registered upstream (its state moves on) while its label waits for a
    stopped printer: the label is still owed, and printed once the printer is back."""
    async with printing_station(tmp_path) as (cups, config, journal, labels, _):
        await cups.disable("out of labels")
        uci = await provision(config, journal, labels, "02:00:00:00:00:0a")
        await journal.record(uci, "registered", "upstream", {"created": True},
                             state="registered")
        assert await journal.labels_owed() == [uci]
        await cups.enable()
        jobs = await cups.device.wait_jobs(1, timeout=60)
        async with asyncio.timeout(20):
            while await journal.labels_owed():
                await asyncio.sleep(0.05)
        assert "printed" in await kinds(journal, uci)
        assert jobs[0] == (tmp_path / "labels" / f"{uci}-1.pdf").read_bytes()
        await asyncio.sleep(0.5)
        assert len(cups.device.jobs) == 1


async def test_a_unit_verified_but_never_labelled_gets_its_label_at_start(
        tmp_path: Path) -> None:
    """The station stopped between `verified` and `labelled`, and the unit left: the next
    start makes the label (once), and a re-plug does not make another."""
    config = load(station_config(tmp_path))
    journal = await open_journal(config.journal, config.station_id)
    try:
        device = MemoryUnit(hardware_id="02:00:00:00:00:0b")
        product = config.product(PRODUCT)
        assert product is not None
        run = await Pipeline(journal, DEFAULT_STEPS).provision(  # no Label: "stopped" there
            UnitRun(fixture="f1", product=product, device_path="config/device.json5"), device)
        assert run.uci is not None
        assert await kinds(journal, run.uci) == ["issued", "written", "verified"]
        labels = LabelMaker(config, journal, ProductLabels(config))
        assert await labels.recover() == 1
        assert await labels.recover() == 0
        assert await kinds(journal, run.uci) == ["issued", "written", "verified", "labelled"]
        assert (tmp_path / "labels" / f"{run.uci}-1.pdf").exists()
        # Failed at a later step, then re-plugged: written and verified again, no new label.
        await journal.record(run.uci, "failed", "fixture:f1", {"code": "test"},
                             state="failed")
        assert await provision(config, journal, labels, "", device) == run.uci
        assert (await kinds(journal, run.uci))[-2:] == ["written", "verified"]
        assert (await kinds(journal, run.uci)).count("labelled") == 1
    finally:
        await journal.close()


async def test_a_job_submitted_before_a_crash_is_adopted_not_printed_twice(
        tmp_path: Path) -> None:
    async with printing_station(tmp_path, worker=False) as (cups, config, journal, labels, queue):
        uci = await provision(config, journal, labels, "02:00:00:00:00:09")
        pdf = Path((await journal.unit(uci)).events[-1].data["pdf"])
        # The station journaled that it was sending the job, sent it, then died before
        # journaling the job id; CUPS printed it meanwhile, and printed others since.
        await journal.record(uci, "print_submitting", "printer:labels",
                             {"queue": cups.queue, "copy": 1, "title": f"label {uci} 1"})
        job = await submit(pdf, cups.queue, title=f"label {uci} 1", server=cups.server)
        await cups.device.wait_jobs(1)
        await asyncio.sleep(2)  # CUPS unloads the finished job (and its name) meanwhile
        await queue.print_unit(uci)
        events = (await journal.unit(uci)).events
        submitted = [e for e in events if e.kind == "print_submitted"]
        assert [e.data["job"] for e in submitted] == [job]
        assert submitted[0].data["adopted"] is True
        assert events[-1].kind == "printed"
        await asyncio.sleep(0.5)
        assert len(cups.device.jobs) == 1


async def test_reprint_is_journaled_with_reason_and_copy(tmp_path: Path) -> None:
    async with printing_station(tmp_path) as (cups, config, journal, labels, queue):
        uci = await provision(config, journal, labels, "02:00:00:00:00:05")
        await until_state(journal, uci, "printed")
        result = await asyncio.to_thread(run_cli, config.source, "label", "reprint",
                                         uci_codec.human(uci), "--reason", "smudged")
        assert "reprint" in result.stdout
        queue.wake()
        async with asyncio.timeout(30):
            while (await kinds(journal, uci)).count("printed") < 2:
                await asyncio.sleep(0.05)
                queue.wake()
        events = (await journal.unit(uci)).events
        reprint = [e for e in events if e.kind == "labelled"][1]
        assert reprint.data["reason"] == "smudged" and reprint.data["copy"] == 2
        assert [e.data["copy"] for e in events if e.kind == "printed"] == [1, 2]
        assert len(await cups.device.wait_jobs(2)) == 2


def test_a_bad_template_stops_the_station_at_start(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "thermal-50x30.toml").write_text(
        (ROOT / "labels" / "thermal-50x30.toml").read_text().replace("size = 22", "size = 8"))
    config = station_config(tmp_path).read_text().replace(f"{ROOT}/labels", str(labels))
    path = tmp_path / "bad.toml"
    path.write_text(config)
    result = run_cli(path, "serve", check=False)
    assert result.returncode == 2
    assert "thermal-50x30.toml" in result.stderr and "qr" in result.stderr
    assert "Traceback" not in result.stderr


async def test_sheet_labels_and_bad_jobs_do_not_stop_the_print_queue(tmp_path: Path) -> None:
    async with printing_station(tmp_path) as (cups, config, journal, labels, _):
        sheet = await asyncio.to_thread(
            run_cli, config.source, "label", "sheet", "--product", PRODUCT, "--count", "3",
            "-o", str(tmp_path / "sheet.pdf"))
        assert "3 new UCIs on 1 sheet(s)" in sheet.stdout
        assert len(qr_codes(tmp_path / "sheet.pdf")) == 3
        uci = await provision(config, journal, labels, "02:00:00:00:00:0a")
        await until_state(journal, uci, "printed")  # the sheet's units did not block it
        assert len(await cups.device.wait_jobs(1)) == 1
        units, _ = await journal.units(state="labelled")
        assert len(units) == 3  # the sheet's units wait for their write, not for a printer
