"""The print queue of the running station: prints every label the journal says the printer
owes, outlives a stopped printer and a restarted station without printing a label twice, and
holds the printer's state for the status page.

A label's life in the journal: `labelled` {pdf, sha256, copy, zpl?} (made by
`factory.labels.making`; the printer owes it: the journal's `labels_owed`) →
`print_submitting` {title} → `print_submitted` {job} → `printed` {job} (state printed). Each
job is titled "label <UCI> <copy>", so after a crash between submitting and the journal
(`print_submitting` without `print_submitted`) the queue finds the job it already submitted
instead of printing the label again.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path

from factory import failpoints
from factory.config import Printer
from factory.journal.interface import Journal
from factory.journal.records import Event
from factory.labels.printers.interface import LabelPrinter, PrinterUnavailable, PrintRejected

log = logging.getLogger("factory.labels")
PRINT_TIMEOUT = 60.0  # seconds a job may take before the printer counts as unavailable
RETRY_MAX = 30.0  # seconds between tries while the printer is unavailable


class PrintQueue:
    """Prints the owed labels of one station on its printer (none: labels are only kept)."""

    def __init__(self, settings: Printer, journal: Journal,
                 printer: LabelPrinter | None) -> None:
        self._settings, self._journal, self._printer = settings, journal, printer
        self._wakeup = asyncio.Event()
        self.printer_state = "idle" if printer is not None else "none"
        self.printer_reason = ""

    def wake(self) -> None:
        """A label is owed: try now rather than at the next retry."""
        self._wakeup.set()

    async def run_forever(self) -> None:
        """Print every unit waiting in state `labelled`, oldest first, for as long as the
        station runs; a printer that is down is retried, the rest of the station goes on."""
        delay = 1.0
        while True:
            if self._printer is not None:
                try:
                    await self._print_waiting()
                    delay = 1.0
                    self.printer_state, self.printer_reason = "idle", ""
                except PrinterUnavailable as exc:
                    if self.printer_reason != exc.reason:
                        log.warning("printer %s: %s -> %s (retrying)", self._settings.name,
                                    exc.reason, exc.action)
                    self.printer_state, self.printer_reason = "unavailable", exc.reason
                    delay = min(delay * 2, RETRY_MAX)
            self._wakeup.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def _print_waiting(self) -> None:
        for uci in await self._journal.labels_owed():
            try:
                await self.print_unit(uci)
            except PrinterUnavailable:
                raise  # the printer, not this label: wait and retry them all
            except PrintRejected as exc:
                # The printer refuses this job outright: retrying would refuse it again.
                await self._journal.record(uci, "print_failed", "printer",
                                           {"reason": exc.reason, "action": exc.action},
                                           state="failed")
                log.error("label of %s refused: %s -> %s", uci, exc.reason, exc.action)
            except Exception:  # one bad label must not stop the others or the worker
                log.exception("printing the label of %s failed; it is retried", uci)

    async def print_unit(self, uci: str) -> None:
        """Print the unit's newest label, once: adopt a job already submitted for it."""
        printer, settings = self._printer, self._settings
        assert printer is not None  # only a station with a printer owes labels to one
        events = (await self._journal.unit(uci)).events
        labelled = _last(events, "labelled")
        if labelled is None or "pdf" not in labelled.data:
            return  # a sheet run's label: printed with its sheet, not by this queue
        # The file the printer speaks: native ZPL when it was made, else the PDF.
        label_file = Path(labelled.data.get("zpl") or labelled.data["pdf"])
        copy = labelled.data["copy"]
        actor = f"printer:{settings.name}"
        after = [e for e in events if e.seq > labelled.seq]
        submitted = _last(after, "print_submitted")
        if submitted is not None:
            job = str(submitted.data["job"])
        else:
            title = f"label {uci} {copy}"
            # Journaled before submitting: only a print cut short by a crash is looked for.
            intent = _last(after, "print_submitting")
            found = [] if intent is None else await printer.find_jobs(title, _unix(intent.at))
            if found:
                job = found[-1]
            else:
                if intent is None:
                    await self._journal.record(uci, "print_submitting", actor,
                                               {"queue": settings.name, "copy": copy,
                                                "title": title})
                job = await printer.submit(label_file, title)
                failpoints.hit("print.submitted")
            await self._journal.record(uci, "print_submitted", actor,
                                       {"job": job, "queue": settings.name, "copy": copy,
                                        "adopted": bool(found)})
        try:
            await printer.wait_printed(job, PRINT_TIMEOUT)
        except PrintRejected as exc:
            # Canceled or aborted by the printer: the label is still owed; a new job next round.
            await self._journal.record(uci, "print_failed", actor,
                                       {"job": job, "reason": exc.reason, "copy": copy})
            await self._journal.record(uci, "labelled", actor,
                                       {**labelled.data, "retry_of": job}, state="labelled")
            return
        failpoints.hit("print.done")
        await self._journal.record(uci, "printed", actor,
                                   {"job": job, "copy": copy, "copies": settings.copies},
                                   state="printed")
        log.info("printed the label of %s (copy %d, job %s)", uci, copy, job)


def _unix(at: str) -> float:
    """An event's time (ISO 8601, UTC) as a Unix time."""
    return datetime.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def _last(events: list[Event], kind: str) -> Event | None:
    for event in reversed(events):
        if event.kind == kind:
            return event
    return None
