"""`LabelPrinter` for a CUPS queue: the configured queue, server, copies and options applied
to every job. Native ZPL goes through the queue unfiltered (`lp -o raw`): the queue's own
driver, if it has one, would take it for text."""

from __future__ import annotations

from pathlib import Path

from factory.config import Printer
from factory.labels.printers.cups.ipp import find_jobs, wait_printed
from factory.labels.printers.cups.lp import submit

CLOCK_SLACK = 120.0  # seconds the CUPS server's clock may be behind the station's


class CupsPrinter:
    """Prints kept label PDFs on the config's CUPS queue (`lp`) and follows the jobs (IPP)."""

    def __init__(self, settings: Printer) -> None:
        self._settings = settings
        self._server = settings.server or None  # None: $CUPS_SERVER, else localhost:631

    async def submit(self, label: Path, title: str) -> str:
        settings = self._settings
        options = settings.options
        if label.suffix == ".zpl":
            options = {**options, "raw": "true"}
        return await submit(label, settings.queue, title=title, copies=settings.copies,
                            options=options, server=self._server)

    async def find_jobs(self, title: str, since: float) -> list[str]:
        return await find_jobs(title, self._settings.queue, self._server,
                               since=since - CLOCK_SLACK)

    async def wait_printed(self, job: str, timeout: float) -> None:
        await wait_printed(job, timeout, self._server)
