"""The steps that read a unit's label: `Bind` (label-first lines: the operator scans the
pre-printed label of the unit in the fixture, and the station binds that UCI to the unit's
hardware id) and `CheckLabel` (end of line: the label stuck on the unit is scanned and must
name the unit's UCI). Scans arrive through `units/scans.py:ScanDesk`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from factory import failpoints
from factory import uci as uci_codec
from factory.config import Product
from factory.config.scanner import Scanning
from factory.journal.errors import UnitNotFound
from factory.journal.records import Unit
from factory.states import DONE_STATES
from factory.units.driver import UnitDriver
from factory.units.errors import UnitError, UnitGone
from factory.units.pipeline import Issue, Ledger, Step, UnitRun
from factory.units.scans import Scan, ScanDesk

PRESENCE_EVERY = 1.0  # seconds between looks whether the unit is still there while waiting
PRINT_POLL = 0.25  # seconds between looks in the journal whether the unit's label printed


class ScanRefused(Exception):
    """A scan that cannot be taken: why, and what the operator does next."""

    def __init__(self, reason: str, action: str) -> None:
        super().__init__(reason)
        self.reason, self.action = reason, action


class LabelNotPrinted(UnitError):
    code = "label-not-printed"
    action = ("fix what the printer reported, reprint the unit's label (factory label reprint "
              "UCI --reason ...), plug the unit in again to check it")


class LabelMismatch(UnitError):
    code = "label-mismatch"
    action = ("take the label off and void its UCI if it belongs to no unit (factory void "
              "UCI --reason ...); reprint this unit's label (factory label reprint UCI "
              "--reason 'label mismatch'), stick it on, plug the unit in again to check it")


def read_label(code: str) -> str:
    """The canonical UCI a scanned code names: a UCI in any form, or a URL (a claim URL) or
    other text with one as a part of it."""
    text = code.strip()
    try:
        return uci_codec.find(text)
    except uci_codec.UciError as first:
        problem = first
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise ScanRefused(f"the scan {shown!r} holds no UCI ({problem})",
                      "scan the unit's label again (hold the scanner steady, the whole code "
                      "in view)")


async def free_label(code: str, product: Product, ledger: Ledger) -> Unit:
    """The unit a scanned pre-printed label names, if it may be bound to a unit of `product`:
    issued here, of that product, not voided, not bound yet."""
    uci = read_label(code)
    human = uci_codec.human(uci)
    try:
        unit = await ledger.unit(uci)
    except UnitNotFound:
        raise ScanRefused(f"label {human} was not issued by this station's journal",
                          "use a label printed for this line (factory label sheet)") from None
    if unit.product != product.id:
        raise ScanRefused(f"label {human} is for product {unit.product}, not {product.id}",
                          f"take a {product.id} label and scan it")
    if unit.state == "voided":
        raise ScanRefused(f"label {human} is voided", "throw it away; take a new label")
    if unit.hardware_id is not None or unit.last("bound") is not None:
        raise ScanRefused(f"label {human} is already bound to unit {unit.hardware_id}",
                          "take a new label from the sheet; this one belongs to another unit")
    return unit


async def next_scan(inbox: asyncio.Queue[Scan], driver: UnitDriver) -> Scan:
    """The next scan for the fixture; UnitGone if the unit leaves while it waits."""
    while True:
        try:
            async with asyncio.timeout(PRESENCE_EVERY):
                return await inbox.get()
        except TimeoutError:
            if not await driver.present():
                raise UnitGone("the unit was taken away while the fixture waited for a "
                               "scan") from None


class Bind:
    """Label-first lines, instead of `Issue`: the unit keeps the UCI bound to its hardware id,
    or takes the one of the free label the operator scans (journaled `bound`)."""

    name = "scanning"

    def __init__(self, desk: ScanDesk) -> None:
        self._desk = desk

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        assert run.hardware_id is not None
        for unit in await ledger.live_units_for_hardware(run.hardware_id):
            if unit.product == run.product.id:  # plugged in again: it keeps its label
                self._take(run, await ledger.unit(unit.uci))
                run.log.append(f"already bound to UCI {unit.uci}")
                return
        with self._desk.wait_for(run.fixture) as inbox:
            while True:
                scan = await next_scan(inbox, driver)
                try:
                    unit = await self._bind(run, scan, ledger)
                except ScanRefused as exc:
                    scan.answer(False, f"{exc.reason}; {exc.action}")
                    self._desk.tell(run.fixture, exc.reason, exc.action)
                    continue
                except BaseException:
                    scan.answer(False, "the station could not bind the label; see the "
                                       "fixture's card")
                    raise
                human = uci_codec.human(unit.uci)
                scan.answer(True, f"label {human} bound to {run.hardware_id}", unit.uci)
                self._take(run, unit)
                run.log.append(f"bound label {unit.uci} ({scan.source} scan)")
                return

    async def _bind(self, run: UnitRun, scan: Scan, ledger: Ledger) -> Unit:
        async with self._desk.binding:
            unit = await free_label(scan.code, run.product, ledger)
            failpoints.hit("scan.accepted")
            await ledger.record(unit.uci, "bound", run.actor,
                                {"hardware_id": run.hardware_id, "source": scan.source})
        return unit

    @staticmethod
    def _take(run: UnitRun, unit: Unit) -> None:
        run.uci, run.created, run.issued_at = unit.uci, False, unit.created_at
        # A pre-printed label's unit is `labelled` before it was ever written: done means
        # its device file verified, not its state.
        run.already_done = (unit.state in DONE_STATES
                            and unit.last("verified") is not None)


class CheckLabel:
    """End of line: once the unit's label printed, the label stuck on the unit is scanned; it
    must name the unit's UCI (journaled `label_checked`), else the unit fails
    `label-mismatch`."""

    name = "checking"

    def __init__(self, desk: ScanDesk) -> None:
        self._desk = desk

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        assert run.uci is not None
        if (await ledger.unit(run.uci)).last("label_checked") is not None:
            return  # checked when it was here before
        await self._until_printed(run, driver, ledger)
        human = uci_codec.human(run.uci)
        with self._desk.wait_for(run.fixture) as inbox:
            while True:
                scan = await next_scan(inbox, driver)
                try:
                    scanned = read_label(scan.code)
                except ScanRefused as exc:
                    scan.answer(False, f"{exc.reason}; {exc.action}")
                    self._desk.tell(run.fixture, exc.reason, exc.action)
                    continue
                if scanned != run.uci:
                    scan.answer(False, f"label {uci_codec.human(scanned)} is not this "
                                       f"unit's ({human})")
                    raise LabelMismatch(f"the label on the unit reads "
                                        f"{uci_codec.human(scanned)}, but the unit is {human}")
                await ledger.record(run.uci, "label_checked", run.actor,
                                    {"source": scan.source})
                scan.answer(True, f"label {human} matches the unit", run.uci)
                run.log.append(f"label checked ({scan.source} scan)")
                return

    async def _until_printed(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        """Wait while a printer owes the unit's newest label: until it printed, nothing on
        the unit can be its label (a scan then would check an old copy, or another unit's)."""
        assert run.uci is not None
        told = False
        waited = 0.0
        while True:
            unit = await ledger.unit(run.uci)
            labelled = unit.last("labelled")
            if labelled is None or "printer" not in labelled.data:
                return  # a pre-printed sheet's label, or one kept only as a file
            after = {e.kind for e in unit.events if e.seq > labelled.seq}
            if "printed" in after:
                return
            if "print_failed" in after:
                raise LabelNotPrinted(f"the printer refused the label of "
                                      f"{uci_codec.human(run.uci)}: nothing to check")
            if not told:
                self._desk.tell(run.fixture, "waiting for the unit's label to print",
                                "stick the label on the unit once it is printed")
                told = True
            await asyncio.sleep(PRINT_POLL)
            waited += PRINT_POLL
            if waited >= PRESENCE_EVERY:
                waited = 0.0
                if not await driver.present():
                    raise UnitGone("the unit was taken away while its label was printing")


def with_scans(steps: Sequence[Step], scanning: Scanning, desk: ScanDesk,
               product: Product | None = None) -> list[Step]:
    """A fixture's steps with its scanning: `bind = "scan"` binds a pre-printed label instead
    of issuing a UCI (and prints none: the unit has one), `scan_check` (the fixture's or the
    product's) checks it at the end."""
    out = list(steps)
    if scanning.bind == "scan":
        out = [Bind(desk) if isinstance(s, Issue) else s for s in out
               if s.name != "labelling"]
    if scanning.scan_check or (product is not None and product.scan_check):
        out.append(CheckLabel(desk))
    return out
