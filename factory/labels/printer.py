"""The CUPS edge: `lp` submits a label PDF; `ipptool` reads queue and job state over IPP.

Why ipptool and not `lpstat` for reading: lpstat prints localised prose, never a job's title
and never its state (its "Alerts" line even says `processing-to-stop-point` for a job that
completed), and `lpstat -r` exits 0 even when cupsd is down. IPP's `job-state` enum,
`job-name`, `printer-state` and `printer-is-accepting-jobs` are exact, and `ipptool -X` prints
them as a plist the standard library parses. ipptool ships with CUPS (Debian's cups-ipp-utils,
pulled in by `cups`). Every program runs without a shell, arguments as a list, so a title or
option reaches CUPS as one literal value.
"""

from __future__ import annotations

import asyncio
import enum
import os
import plistlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

CALL_TIMEOUT = 10.0  # seconds for one lp/ipptool call; a healthy local cupsd answers in ms
POLL_INTERVAL = 0.25  # seconds between job-state reads in wait_printed

_NO_OPTIONS: Mapping[str, str] = MappingProxyType({})
_REQUEST_ID = re.compile(r"request id is (\S+-\d+) \(")
_JOB_ID = re.compile(r"(?P<queue>.+)-(?P<number>\d+)")
_QUEUE = re.compile(r"[^\s/\\#'\"]{1,127}")
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_OPTION_VALUE = re.compile(r"[^\s'\"\\{}]+")  # lp splits `-o` values on blanks and quotes
_LP_UNAVAILABLE = ("does not exist", "not accepting", "unable to connect", "not responding",
                   "service unavailable", "busy")


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


class JobState(enum.StrEnum):
    """IPP `job-state` (RFC 8011 5.3.7), by name."""

    PENDING = "pending"
    HELD = "held"
    PROCESSING = "processing"
    STOPPED = "stopped"
    CANCELED = "canceled"
    ABORTED = "aborted"
    COMPLETED = "completed"


_IPP_JOB_STATES = {3: JobState.PENDING, 4: JobState.HELD, 5: JobState.PROCESSING,
                   6: JobState.STOPPED, 7: JobState.CANCELED, 8: JobState.ABORTED,
                   9: JobState.COMPLETED}
_PRINTER_STOPPED = 5  # IPP printer-state: 3 idle, 4 processing, 5 stopped


@dataclass(frozen=True)
class _Job:
    state: JobState
    message: str  # the printer's last word on it, e.g. "The printer may not exist ..."


async def submit(pdf: Path, queue: str, *, title: str, copies: int = 1,
                 options: Mapping[str, str] = _NO_OPTIONS, server: str | None = None) -> str:
    """Print `pdf` on `queue` and return the CUPS job id (e.g. `labels-42`).

    The queue is checked first because `lp` accepts (exit 0) a job for a stopped queue."""
    _check_request(title, copies, options)
    address = _address(server)
    await check_queue(queue, server)
    argv = ["lp", "-h", address, "-d", queue, "-t", title, "-n", str(copies)]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    argv += ["--", str(pdf)]
    code, out, err = await _run(argv)
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


async def check_queue(queue: str, server: str | None = None) -> None:
    """Raise PrinterUnavailable unless `queue` exists, is enabled and accepts jobs."""
    attrs = await _printer(queue, _address(server))
    _raise_if_stopped(queue, attrs)
    if attrs.get("printer-is-accepting-jobs") is not True:
        message = str(attrs.get("printer-state-message") or "").strip()
        because = f" ({message})" if message else ""
        raise PrinterUnavailable(f"CUPS queue {queue!r} is not accepting jobs{because}",
                                 f"fix the printer, then run `cupsaccept {queue}`")


async def job_state(job_id: str, server: str | None = None) -> JobState:
    """The job's IPP `job-state`."""
    return (await _job(job_id, _address(server))).state


async def find_jobs(title: str, queue: str, server: str | None = None,
                    since: float | None = None) -> list[str]:
    """Ids of the jobs on `queue` titled exactly `title`, in any state, oldest first.

    After a crash between `lp` and journaling, this finds the job already submitted. CUPS
    soon unloads a finished job, and Get-Jobs then leaves out its name: with `since` (a Unix
    time), each nameless job created after it is asked for its name, newest first."""
    address = _address(server)
    groups = await _ipp(_GET_JOBS, _printer_uri(address, queue), _queue_missing)
    numbers = [g["job-id"] for g in groups if g.get("job-name") == title and "job-id" in g]
    nameless = sorted((g["job-id"] for g in groups if "job-id" in g and "job-name" not in g),
                      reverse=True)
    for number in nameless if since is not None else []:
        found = await _ipp(_GET_JOB_NAME, f"ipp://{_host(address)}/jobs/{number}",
                           _job_missing)
        attrs = found[0] if found else {}
        if attrs.get("job-name") == title:
            numbers.append(number)
        if since is not None and attrs.get("time-at-creation", 0) < since:
            break  # older than the print we look for: so is every job after it
    return [f"{queue}-{number}" for number in sorted(numbers)]


async def wait_printed(job_id: str, timeout: float, server: str | None = None) -> JobState:
    """Poll until the job completed and return COMPLETED.

    Raises PrinterUnavailable when it is not done within `timeout` seconds or cannot progress
    (held, stopped, its queue stopped), PrintRejected when it was canceled or aborted."""
    address = _address(server)
    queue = _split_job_id(job_id)[0]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await _job(job_id, address)
        message = f": {job.message}" if job.message else ""
        match job.state:
            case JobState.COMPLETED:
                return job.state
            case JobState.CANCELED | JobState.ABORTED:
                raise PrintRejected(f"job {job_id} was {job.state} without printing{message}",
                                    "print the label again if it is still wanted")
            case JobState.HELD:
                raise PrinterUnavailable(f"job {job_id} is held{message}",
                                         f"release it with `lp -i {job_id} -H resume`")
            case JobState.STOPPED:
                raise PrinterUnavailable(f"job {job_id} is stopped{message}",
                                         f"fix the printer, then run `cupsenable {queue}`")
            case JobState.PENDING:  # a stopped queue never starts it
                _raise_if_stopped(queue, await _printer(queue, address))
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise PrinterUnavailable(
                f"job {job_id} is still {job.state} after {timeout:g} s"
                f"{message or ' (no word from the printer)'}",
                "check the printer is switched on, connected and loaded; the job prints when"
                " it answers")
        await asyncio.sleep(min(POLL_INTERVAL, remaining))


# IPP requests for ipptool. `$uri` and `$user` are ipptool's own variables; no caller text
# ever goes into a request (titles are compared here), so none is parsed as ipptool syntax.
def _ipp_request(operation: str, target: str, *attributes: str) -> bytes:
    lines = ["{", f"OPERATION {operation}", "GROUP operation-attributes-tag",
             "ATTR charset attributes-charset utf-8",
             "ATTR naturalLanguage attributes-natural-language en",
             f"ATTR uri {target} $uri", "ATTR name requesting-user-name $user",
             *attributes, "}"]
    return "\n".join(lines).encode()


_GET_PRINTER = _ipp_request(
    "Get-Printer-Attributes", "printer-uri",
    "ATTR keyword requested-attributes"
    " printer-state,printer-state-message,printer-is-accepting-jobs")
_GET_JOB = _ipp_request(
    "Get-Job-Attributes", "job-uri",
    "ATTR keyword requested-attributes job-state,job-printer-state-message")
_GET_JOB_NAME = _ipp_request(
    "Get-Job-Attributes", "job-uri",
    "ATTR keyword requested-attributes job-name,time-at-creation")
_GET_JOBS = _ipp_request(
    "Get-Jobs", "printer-uri", "ATTR keyword which-jobs all",
    "ATTR keyword requested-attributes job-id,job-name")


async def _printer(queue: str, address: str) -> dict[str, Any]:
    groups = await _ipp(_GET_PRINTER, _printer_uri(address, queue), _queue_missing)
    return groups[0] if groups else {}


def _raise_if_stopped(queue: str, attrs: Mapping[str, Any]) -> None:
    if attrs.get("printer-state") == _PRINTER_STOPPED:
        message = str(attrs.get("printer-state-message") or "").strip()
        because = f" ({message})" if message else ""
        raise PrinterUnavailable(f"CUPS queue {queue!r} is stopped{because}",
                                 f"fix the printer, then run `cupsenable {queue}`")


def _queue_missing(uri: str, message: str) -> PrinterError:
    return PrinterUnavailable(f"CUPS has no queue at {uri}: {message}",
                              "create the queue (lpadmin) or fix the queue name in the station"
                              " config")


def _job_missing(uri: str, message: str) -> PrinterError:
    return JobNotFound(f"CUPS has no job at {uri}: {message}")


async def _job(job_id: str, address: str) -> _Job:
    number = _split_job_id(job_id)[1]
    groups = await _ipp(_GET_JOB, f"ipp://{_host(address)}/jobs/{number}", _job_missing)
    if not groups or groups[0].get("job-state") not in _IPP_JOB_STATES:
        raise PrinterError(f"CUPS at {address} gave no state for job {job_id}")
    attrs = groups[0]
    return _Job(_IPP_JOB_STATES[attrs["job-state"]],
                str(attrs.get("job-printer-state-message") or "").strip())


async def _ipp(request: bytes, uri: str,
               missing: Callable[[str, str], PrinterError]) -> list[dict[str, Any]]:
    """Send one IPP request with ipptool; return the response's non-operation groups."""
    timeout = f"{CALL_TIMEOUT:g}"
    code, out, err = await _run(["ipptool", "-X", "-T", timeout, uri, "/dev/stdin"], request)
    try:
        report = plistlib.loads(out.encode())
    except (plistlib.InvalidFileException, ValueError) as exc:
        raise PrinterUnavailable(f"ipptool failed for {uri}: {err.strip() or out[:200]}") from exc
    tests = report.get("Tests") or []
    if not tests:  # no test ran: cupsd did not answer
        problem = report.get("ErrorMessage") or err.strip() or f"ipptool exited {code}"
        raise PrinterUnavailable(f"CUPS does not answer at {uri}: {problem}",
                                 "start CUPS (or check the printer server address); the label"
                                 " stays queued")
    test = tests[0]
    groups: list[dict[str, Any]] = test.get("ResponseAttributes") or [{}]
    status = str(test.get("StatusCode", ""))
    if status.startswith("successful-ok"):
        return groups[1:]
    message = groups[0].get("status-message") or status
    if status == "client-error-not-found":
        raise missing(uri, message)
    raise PrinterUnavailable(f"CUPS refused to report on {uri}: {message}")


async def _run(argv: Sequence[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run one CUPS program (never a shell) in the C locale, so its messages are parseable."""
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise PrinterUnavailable(f"{argv[0]} is not installed",
                                 "install the Debian packages cups-client and cups-ipp-utils"
                                 ) from exc
    try:
        async with asyncio.timeout(CALL_TIMEOUT + 2):
            out, err = await proc.communicate(stdin)
    except TimeoutError:
        raise PrinterUnavailable(f"{argv[0]} got no answer from CUPS in {CALL_TIMEOUT:g} s",
                                 "check CUPS is running and not overloaded") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: do not leave it running
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _check_request(title: str, copies: int, options: Mapping[str, str]) -> None:
    if not title or not title.isprintable() or len(title.encode()) > 255:
        raise PrintRejected(f"job title {title!r} must be 1-255 bytes of printable text")
    if not 1 <= copies <= 100:
        raise PrintRejected(f"copies must be 1 to 100, not {copies}")
    for name, value in options.items():
        if _OPTION_NAME.fullmatch(name) is None or _OPTION_VALUE.fullmatch(value) is None:
            raise PrintRejected(f"printer option {name}={value!r} is not a plain CUPS option"
                                " (no blanks, quotes, backslashes or braces)")


def _address(server: str | None) -> str:
    """host:port or a socket path: the argument, else $CUPS_SERVER, else localhost:631."""
    return server or os.environ.get("CUPS_SERVER") or "localhost:631"


def _host(address: str) -> str:
    # CUPS spells a domain socket as a URI host with the slashes escaped.
    return quote(address, safe="") if address.startswith("/") else address


def _printer_uri(address: str, queue: str) -> str:
    if _QUEUE.fullmatch(queue) is None:
        raise PrintRejected(f"{queue!r} is not a CUPS queue name",
                            "set the queue in the station config to a name `lpstat -e` lists")
    return f"ipp://{_host(address)}/printers/{quote(queue, safe='')}"


def _split_job_id(job_id: str) -> tuple[str, int]:
    found = _JOB_ID.fullmatch(job_id)
    if found is None:
        raise PrinterError(f"{job_id!r} is not a CUPS job id (QUEUE-NUMBER)",
                           "use the id that submit returned")
    return found["queue"], int(found["number"])
