"""Label-first lines and the end-of-line label check, over a real journal: a scanned
pre-printed label binds its UCI to the unit in the fixture; every refusal leaves the fixture
waiting for another scan; the label on a finished unit is checked against its UCI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from factory import uci as uci_codec
from factory.config import ConfigError, Product, StationConfig
from factory.config.scanner import Scanning
from factory.journal.interface import Journal
from factory.journal.records import IssueRequest
from factory.states import FixtureStatus
from factory.units.driver import UnitDriver
from factory.units.errors import UnitGone
from factory.units.label_scans import LabelMismatch, LabelNotPrinted, read_label, with_scans
from factory.units.pipeline import DEFAULT_STEPS, Ledger, Pipeline, Step, UnitRun
from factory.units.scans import ScanDesk, ScanIgnored
from tests.conftest import OTHER_PRODUCT, PRODUCT
from tests.test_pipeline import MemoryUnit

MAC = "02:00:00:00:00:01"
HW = "020000000001"
CLAIM = "https://claim.example.com/c/{uci}"


def product(config: StationConfig, pid: str = PRODUCT) -> Product:
    found = config.product(pid)
    assert found is not None
    return found


async def sheet(journal: Journal, count: int, pid: str = PRODUCT) -> list[str]:
    """Pre-printed labels, as `factory label sheet` journals them."""
    ucis = (await journal.issue(IssueRequest(product=pid, actor="test", count=count))).ucis
    for u in ucis:
        await journal.record(u, "labelled", "test", {"sheet": "s.pdf"}, state="labelled")
    return ucis


class Line:
    """One fixture `f1` with a desk, provisioning units in the background."""

    def __init__(self, config: StationConfig, journal: Journal, scanning: Scanning,
                 before: Sequence[Step] = ()) -> None:
        self.desk = ScanDesk()
        self.status = FixtureStatus("f1", "/dev/null")
        self.desk.add_fixture(self.status)
        self.journal, self.product = journal, product(config)
        steps = with_scans([*DEFAULT_STEPS, *before], scanning, self.desk)
        self.pipeline = Pipeline(journal, steps,
                                 on_step=lambda run: self.status.set(run.step, uci=run.uci))

    def start(self, unit: MemoryUnit) -> asyncio.Task[UnitRun]:
        run = UnitRun(fixture="f1", product=self.product, device_path="config/device.json5")
        return asyncio.create_task(self.pipeline.provision(run, unit))

    async def waiting(self) -> None:
        async with asyncio.timeout(10):
            while not self.desk.waiting("f1"):
                await asyncio.sleep(0.01)


@pytest.fixture
async def bind_line(config: StationConfig, journal: Journal) -> AsyncIterator[Line]:
    yield Line(config, journal, Scanning(bind="scan"))


def test_with_scans_binds_instead_of_issuing_and_prints_no_second_label() -> None:
    desk = ScanDesk()
    names = [s.name for s in with_scans(DEFAULT_STEPS, Scanning(bind="scan"), desk)]
    assert names == ["identifying", "scanning", "writing", "verifying"]
    names = [s.name for s in with_scans(DEFAULT_STEPS, Scanning(scan_check=True), desk)]
    assert names == ["identifying", "issuing", "writing", "verifying", "checking"]


def test_a_product_asks_every_fixture_of_it_for_the_scan_check(tmp_path: Path) -> None:
    from factory.config import load
    from tests.conftest import CONFIG_TEXT, write_config
    text = CONFIG_TEXT.replace('model = "AQ-100"', 'model = "AQ-100"\nscan_check = true')
    checked = product(load(write_config(tmp_path, text)))
    assert checked.scan_check
    names = [s.name for s in with_scans(DEFAULT_STEPS, Scanning(), ScanDesk(), checked)]
    assert names[-1] == "checking"
    with pytest.raises(ConfigError):
        load(write_config(tmp_path, text.replace("scan_check = true", 'scan_check = "yes"')))


@pytest.mark.parametrize("form", [
    "{uci}", "{human}", "{lower}", "{url}", "  {human}\r", "{spaced}"])
def test_a_label_is_read_in_any_form(form: str) -> None:
    uci = uci_codec.new_uci()
    human = uci_codec.human(uci)
    text = form.format(uci=uci, human=human, lower=human.lower(), url=CLAIM.format(uci=uci),
                       spaced=human.replace("-", " "))
    assert read_label(text) == uci


async def test_a_scanned_label_is_bound_written_and_verified(bind_line: Line,
                                                             journal: Journal) -> None:
    labels = await sheet(journal, 3)
    unit = MemoryUnit(hardware_id=MAC)
    task = bind_line.start(unit)
    await bind_line.waiting()
    assert bind_line.status.state == "scanning"
    answer = await bind_line.desk.scan("f1", CLAIM.format(uci=labels[1]), "api")
    assert answer.accepted and answer.uci == labels[1]
    run = await task
    assert run.uci == labels[1]
    bound = await journal.unit(labels[1])
    assert bound.hardware_id == HW and bound.state == "verified"
    assert [e.kind for e in bound.events] == ["issued", "labelled", "bound", "written",
                                              "verified"]
    assert bound.last("bound") is not None and bound.last("bound").data == {  # type: ignore[union-attr]
        "hardware_id": HW, "source": "api"}
    assert labels[1].encode() in unit.files["config/device.json5"]
    # the other labels stay free
    assert (await journal.unit(labels[0])).hardware_id is None


async def refused(line: Line, code: str) -> str:
    answer = await line.desk.scan("f1", code, "api")
    assert not answer.accepted
    assert line.status.state in ("scanning", "checking") and line.status.reason in answer.message
    return answer.message


async def test_every_refusal_leaves_the_fixture_waiting_for_another_scan(
        bind_line: Line, journal: Journal) -> None:
    mine = await sheet(journal, 3)
    other = await sheet(journal, 1, OTHER_PRODUCT)
    await journal.void(mine[0], "torn", "test")
    # mine[1] goes to another unit first
    first = bind_line.start(MemoryUnit(hardware_id="02:00:00:00:00:09"))
    await bind_line.waiting()
    assert (await bind_line.desk.scan("f1", mine[1], "api")).accepted
    await first

    task = bind_line.start(MemoryUnit(hardware_id=MAC))
    await bind_line.waiting()
    assert "holds no UCI" in await refused(bind_line, "hello world")
    human = uci_codec.human(mine[2])
    mistyped = human[:-1] + ("1" if human.endswith("0") else "0")
    assert "check symbol" in await refused(bind_line, mistyped)
    assert f"for product {OTHER_PRODUCT}" in await refused(bind_line, other[0])
    assert "is voided" in await refused(bind_line, CLAIM.format(uci=mine[0]))
    assert "already bound to unit 020000000009" in await refused(bind_line, mine[1])
    assert "not issued by this station" in await refused(bind_line, uci_codec.new_uci())
    assert not task.done()
    assert (await bind_line.desk.scan("f1", uci_codec.human(mine[2]), "api")).accepted
    assert (await task).uci == mine[2]
    # nothing refused was journaled
    for uci in (mine[0], other[0]):
        assert (await journal.unit(uci)).last("bound") is None
    assert [e.kind for e in (await journal.unit(mine[1])).events].count("bound") == 1


async def test_a_scan_for_a_fixture_not_waiting_is_ignored_with_a_message(
        bind_line: Line, journal: Journal) -> None:
    labels = await sheet(journal, 1)
    bind_line.status.set("writing")
    with pytest.raises(ScanIgnored) as caught:
        await bind_line.desk.scan("f1", labels[0], "serial")
    assert "not waiting for a scan (it is writing)" in caught.value.message
    assert "ignored" in bind_line.status.reason and bind_line.status.state == "writing"
    with pytest.raises(ScanIgnored) as unknown:
        await bind_line.desk.scan("f9", labels[0], "api")
    assert unknown.value.unknown
    assert (await journal.unit(labels[0])).last("bound") is None


async def test_a_unit_plugged_in_again_after_a_failure_keeps_its_binding(
        bind_line: Line, journal: Journal) -> None:
    from factory.units.errors import VerifyMismatch
    labels = await sheet(journal, 2)
    unit = MemoryUnit(hardware_id=MAC, fail_at={"verify": VerifyMismatch("bad read-back")})
    task = bind_line.start(unit)
    await bind_line.waiting()
    assert (await bind_line.desk.scan("f1", labels[0], "api")).accepted
    with pytest.raises(VerifyMismatch):
        await task
    assert (await journal.unit(labels[0])).state == "failed"
    run = await bind_line.start(unit)  # no scan asked this time
    assert run.uci == labels[0]
    events = [e.kind for e in (await journal.unit(labels[0])).events]
    assert events.count("bound") == 1 and events[-1] == "verified"


async def test_a_unit_taken_away_while_waiting_for_its_scan_fails_as_unplugged(
        bind_line: Line, journal: Journal) -> None:
    class Leaving(MemoryUnit):
        here = True

        async def present(self) -> bool:
            return self.here

    unit = Leaving(hardware_id=MAC)
    task = bind_line.start(unit)
    await bind_line.waiting()
    unit.here = False
    with pytest.raises(UnitGone):
        await task
    assert not bind_line.desk.waiting("f1")


@pytest.fixture
async def check_line(config: StationConfig, journal: Journal) -> AsyncIterator[Line]:
    yield Line(config, journal, Scanning(scan_check=True))


async def test_the_label_on_the_unit_matching_its_uci_is_journaled_checked(
        check_line: Line, journal: Journal) -> None:
    task = check_line.start(MemoryUnit(hardware_id=MAC))
    await check_line.waiting()
    assert check_line.status.state == "checking"
    uci = check_line.status.uci
    assert uci is not None
    assert "holds no UCI" in await refused(check_line, "")  # unreadable: scan again
    answer = await check_line.desk.scan("f1", CLAIM.format(uci=uci), "page")
    assert answer.accepted
    run = await task
    unit = await journal.unit(run.uci or "")
    assert [e.kind for e in unit.events][-1] == "label_checked"
    # plugged in again: already checked, nothing asked
    again = await check_line.start(MemoryUnit(hardware_id=MAC,
                                              files={"config/device.json5": run.payload}))
    assert again.uci == run.uci
    assert [e.kind for e in (await journal.unit(uci)).events].count("label_checked") == 1


async def test_a_label_that_is_not_the_units_fails_it_with_label_mismatch(
        check_line: Line, journal: Journal) -> None:
    task = check_line.start(MemoryUnit(hardware_id=MAC))
    await check_line.waiting()
    wrong = uci_codec.new_uci()
    answer = await check_line.desk.scan("f1", wrong, "serial")
    assert not answer.accepted and uci_codec.human(wrong) in answer.message
    with pytest.raises(LabelMismatch) as caught:
        await task
    assert caught.value.code == "label-mismatch"
    assert "reprint" in caught.value.action and "void" in caught.value.action
    uci = check_line.status.uci or ""
    failed = (await journal.unit(uci)).last("failed")
    assert failed is not None and failed.data["code"] == "label-mismatch"
    assert (await journal.unit(uci)).last("label_checked") is None


class QueuedLabel:
    """The label step of a station with a printer: the label is owed, not yet printed."""

    name = "labelling"

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        assert run.uci is not None
        await ledger.record(run.uci, "labelled", run.actor,
                            {"pdf": "label.pdf", "copy": 1, "printer": "labels"},
                            state="labelled")


@pytest.mark.parametrize("outcome", ["printed", "print_failed"])
async def test_the_check_waits_for_the_label_to_print(config: StationConfig, journal: Journal,
                                                      outcome: str) -> None:
    line = Line(config, journal, Scanning(scan_check=True), [QueuedLabel()])
    task = line.start(MemoryUnit(hardware_id=MAC))
    async with asyncio.timeout(10):
        while "to print" not in line.status.reason:
            await asyncio.sleep(0.01)
    uci = line.status.uci
    assert uci is not None and line.status.state == "checking"
    # Queued, not printed: nothing on the unit can be its label yet, so no scan is taken.
    await asyncio.sleep(0.3)
    assert not line.desk.waiting("f1")
    with pytest.raises(ScanIgnored):
        await line.desk.scan("f1", uci, "api")
    if outcome == "print_failed":
        await journal.record(uci, "print_failed", "printer:labels", {"reason": "no ribbon"},
                             state="failed")
        with pytest.raises(LabelNotPrinted, match="refused the label"):
            await task
        return
    await journal.record(uci, "printed", "printer:labels", {"job": "labels-1", "copy": 1},
                         state="printed")
    await line.waiting()
    assert (await line.desk.scan("f1", CLAIM.format(uci=uci), "api")).accepted
    await task
    assert (await journal.unit(uci)).events[-1].kind == "label_checked"
