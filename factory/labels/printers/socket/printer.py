"""`LabelPrinter` for a printer's raw TCP port (`[printer] socket = "host:9100"`).

Port 9100 has no jobs, ids or states: a connection's bytes are printed as they come. So here:
- a job is one connection that sent the label file whole (`copies` times) and was closed;
  `submit` returns only after the printer took every byte and closed its end (or a grace
  period passed after our end closed), and that is what `printed` means. A printer that jams
  or runs out of labels after taking the bytes is not seen: the end-of-line scan check
  (`scan_check`) is what catches a missing label.
- a job id (`socket-<time>-<n>`) names a marker file in the keep folder, written (synced) after
  the connection opened and before the first byte is sent. After a crash between sending and
  journaling (`print_submitting` without `print_submitted`), `find_jobs` finds the marker and
  the print queue adopts the send instead of printing again: at most once. A crash in the
  middle of a send can therefore lose that label; it is never printed twice.
- a printer that refuses the connection, or breaks it before everything was sent, is
  unavailable: the label stays owed and is sent again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from pathlib import Path

from factory.config import Printer
from factory.files import write_private
from factory.labels.printers.interface import PrinterUnavailable, PrintRejected

CONNECT_TIMEOUT = 10.0  # seconds to reach the printer
SEND_TIMEOUT = 60.0  # seconds for the bytes to go out (a printer out of labels stops reading)
CLOSE_GRACE = 5.0  # seconds the printer gets to close its end after ours closed
MARKERS = ".socket-jobs"  # in the keep folder: one file per job, holding its title
MARKER_DAYS = 7  # markers are kept this long (a crash is found at the next start)
CLOCK_SLACK = 5.0
_sequence = itertools.count(1)


class SocketPrinter:
    """Sends kept ZPL labels to `[printer] socket` and remembers what it sent (see above)."""

    def __init__(self, settings: Printer) -> None:
        assert settings.socket is not None
        self._host, self._port = settings.socket
        self._name = settings.name
        self._copies = settings.copies
        self._markers = settings.keep / MARKERS

    async def submit(self, label: Path, title: str) -> str:
        if label.suffix != ".zpl":
            raise PrintRejected(f"{label.name} is not ZPL; a raw port prints only ZPL",
                                "set [printer] language = \"zpl\" and reprint the label")
        try:
            data = await asyncio.to_thread(label.read_bytes)
        except OSError as exc:
            raise PrintRejected(f"the kept label {label} cannot be read: {exc.strerror}",
                                "reprint the unit's label") from exc
        data *= self._copies
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except (OSError, TimeoutError) as exc:
            raise self._unavailable("cannot be reached", exc) from exc
        job = f"socket-{int(time.time() * 1000)}-{next(_sequence)}"
        marker = self._markers / job
        try:
            await asyncio.to_thread(write_private, marker, title.encode())
            async with asyncio.timeout(SEND_TIMEOUT):
                writer.write(data)
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE):
                    await reader.read()  # a printer closes its end once it read ours
        except (OSError, TimeoutError) as exc:
            marker.unlink(missing_ok=True)  # not sent whole: send it again later
            raise self._unavailable("broke off the send", exc) from exc
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await asyncio.to_thread(self._prune)
        return job

    async def find_jobs(self, title: str, since: float) -> list[str]:
        def scan() -> list[str]:
            found = []
            for marker in sorted(self._markers.glob("socket-*")):
                with contextlib.suppress(OSError):
                    if (marker.stat().st_mtime >= since - CLOCK_SLACK
                            and marker.read_bytes() == title.encode()):
                        found.append(marker.name)
            return found

        return await asyncio.to_thread(scan)

    async def wait_printed(self, job: str, timeout: float) -> None:
        """Sent whole is as printed as port 9100 can tell (see the module's docstring)."""

    def _unavailable(self, what: str, exc: BaseException) -> PrinterUnavailable:
        because = str(exc) or type(exc).__name__
        return PrinterUnavailable(f"printer {self._name} {what}: {because}",
                                  "check the printer is on and on the network; the label "
                                  "stays queued and is sent again")

    def _prune(self) -> None:
        cutoff = time.time() - MARKER_DAYS * 86400
        for marker in self._markers.glob("socket-*"):
            with contextlib.suppress(OSError):
                if marker.stat().st_mtime < cutoff:
                    marker.unlink()
