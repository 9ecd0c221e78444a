"""The one interface every label printer implements, and its exception family.

Errors come in two kinds because the print queue does two different things with them: after
`PrinterUnavailable` it waits and retries every owed label; after `PrintRejected` it journals
this label as failed (the same request would be refused again) and goes on with the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class LabelPrinter(Protocol):
    """Submits kept label files to one configured printer and follows its jobs. Job ids are
    the printer's own words (`labels-42` in CUPS); the queue journals them as they are."""

    async def submit(self, label: Path, title: str) -> str:
        """Print the kept label file `label` (a PDF, or ZPL when it ends in .zpl) with the
        configured copies and options; return the job id."""
        ...

    async def find_jobs(self, title: str, since: float) -> list[str]:
        """Ids of the jobs titled exactly `title` submitted after `since` (a Unix time, the
        station's clock), oldest first: after a crash, the job that was already sent."""
        ...

    async def wait_printed(self, job: str, timeout: float) -> None:
        """Return once `job` printed; PrinterUnavailable when it is not done within `timeout`
        seconds or cannot progress, PrintRejected when it ended without printing."""
        ...


class PrinterError(Exception):
    """Printing failed; `reason` is plain words for the journal, `action` what to do."""

    code = "printer-error"
    action = "check the printer and its CUPS queue"

    def __init__(self, reason: str, action: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if action is not None:
            self.action = action


class PrinterUnavailable(PrinterError):
    """Not printable right now (queue missing/stopped/rejecting, cupsd down): retry later."""

    code = "printer-unavailable"
    action = "the label stays queued and is retried; check the printer and its CUPS queue"


class PrintRejected(PrinterError):
    """CUPS refused this job or it ended without printing: the same request will not work."""

    code = "print-rejected"
    action = "fix the printer options in the station config (or the label file); do not retry"


class JobNotFound(PrinterError):
    """CUPS does not know the job id (history purged, or another server)."""

    code = "job-not-found"
    action = "check the printed labels by eye and reprint the unit's label if it is missing"
