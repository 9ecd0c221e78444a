"""Reading CUPS over IPP with `ipptool`: is a queue printing, what state a job is in, which
jobs carry a title. (Why ipptool and not lpstat: see the package's docstring.)"""

from __future__ import annotations

import asyncio
import enum
import plistlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from factory.labels.printers.cups.programs import CALL_TIMEOUT, run, server_address
from factory.labels.printers.interface import (
    JobNotFound,
    PrinterError,
    PrinterUnavailable,
    PrintRejected,
)

POLL_INTERVAL = 0.25  # seconds between job-state reads in wait_printed

_JOB_ID = re.compile(r"(?P<queue>.+)-(?P<number>\d+)")
_QUEUE = re.compile(r"[^\s/\\#'\"]{1,127}")


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


async def check_queue(queue: str, server: str | None = None) -> None:
    """Raise PrinterUnavailable unless `queue` exists, is enabled and accepts jobs."""
    attrs = await _printer(queue, server_address(server))
    _raise_if_stopped(queue, attrs)
    if attrs.get("printer-is-accepting-jobs") is not True:
        message = str(attrs.get("printer-state-message") or "").strip()
        because = f" ({message})" if message else ""
        raise PrinterUnavailable(f"CUPS queue {queue!r} is not accepting jobs{because}",
                                 f"fix the printer, then run `cupsaccept {queue}`")


async def job_state(job_id: str, server: str | None = None) -> JobState:
    """The job's IPP `job-state`."""
    return (await _job(job_id, server_address(server))).state


async def find_jobs(title: str, queue: str, server: str | None = None,
                    since: float | None = None) -> list[str]:
    """Ids of the jobs on `queue` titled exactly `title`, in any state, oldest first.

    After a crash between `lp` and journaling, this finds the job already submitted. CUPS
    soon unloads a finished job, and Get-Jobs then leaves out its name: with `since` (a Unix
    time), each nameless job created after it is asked for its name, newest first."""
    address = server_address(server)
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
    address = server_address(server)
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
    code, out, err = await run(["ipptool", "-X", "-T", timeout, uri, "/dev/stdin"], request)
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
