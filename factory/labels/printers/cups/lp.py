"""Submitting a label file to a CUPS queue with `lp`, after checking with IPP that the queue
will print it (`lp` accepts a job for a stopped queue and exits 0)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from factory.labels.printers.cups.ipp import check_queue
from factory.labels.printers.cups.programs import run, server_address
from factory.labels.printers.interface import PrinterError, PrinterUnavailable, PrintRejected

_NO_OPTIONS: Mapping[str, str] = MappingProxyType({})
_REQUEST_ID = re.compile(r"request id is (\S+-\d+) \(")
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_OPTION_VALUE = re.compile(r"[^\s'\"\\{}]+")  # lp splits `-o` values on blanks and quotes
_LP_UNAVAILABLE = ("does not exist", "not accepting", "unable to connect", "not responding",
                   "service unavailable", "busy")


async def submit(pdf: Path, queue: str, *, title: str, copies: int = 1,
                 options: Mapping[str, str] = _NO_OPTIONS, server: str | None = None) -> str:
    """Print `pdf` on `queue` and return the CUPS job id (e.g. `labels-42`).

    The queue is checked first because `lp` accepts (exit 0) a job for a stopped queue."""
    _check_request(title, copies, options)
    address = server_address(server)
    await check_queue(queue, server)
    argv = ["lp", "-h", address, "-d", queue, "-t", title, "-n", str(copies)]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    argv += ["--", str(pdf)]
    code, out, err = await run(argv)
    message = (err.strip() or out.strip()).removeprefix("lp: ").removeprefix("Error - ")
    if code != 0:
        if any(phrase in message.lower() for phrase in _LP_UNAVAILABLE):
            raise PrinterUnavailable(f"CUPS at {address} refused the job for {queue!r}: {message}")
        raise PrintRejected(f"CUPS refused to print {pdf.name} on {queue!r}: {message}")
    found = _REQUEST_ID.search(out)
    if found is None:
        raise PrinterError(f"lp printed no job id (it said {out.strip()!r})",
                           "check the label was printed before reprinting it")
    return found.group(1)


def _check_request(title: str, copies: int, options: Mapping[str, str]) -> None:
    if not title or not title.isprintable() or len(title.encode()) > 255:
        raise PrintRejected(f"job title {title!r} must be 1-255 bytes of printable text")
    if not 1 <= copies <= 100:
        raise PrintRejected(f"copies must be 1 to 100, not {copies}")
    for name, value in options.items():
        if _OPTION_NAME.fullmatch(name) is None or _OPTION_VALUE.fullmatch(value) is None:
            raise PrintRejected(f"printer option {name}={value!r} is not a plain CUPS option"
                                " (no blanks, quotes, backslashes or braces)")
