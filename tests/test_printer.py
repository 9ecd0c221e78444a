"""Printing labels through a real, private CUPS daemon (tests/cups.py): the printer receives
exactly our PDF, and a stopped, missing or switched-off printer is reported, never assumed
printed."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from reportlab.pdfgen import canvas

from factory.labels.printers.cups.ipp import JobState, find_jobs, job_state, wait_printed
from factory.labels.printers.cups.lp import submit
from factory.labels.printers.interface import JobNotFound, PrinterUnavailable, PrintRejected
from tests.cups import PrivateCups, free_port, private_cups


@pytest.fixture
async def cups(tmp_path: Path) -> AsyncIterator[PrivateCups]:
    async with private_cups(tmp_path) as running:
        yield running


def make_pdf(path: Path, text: str = "0042-7XQ9-LABEL") -> Path:
    page = canvas.Canvas(str(path), pagesize=(142, 85))  # 50 x 30 mm
    page.drawString(10, 40, text)
    page.save()
    return path


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    return make_pdf(tmp_path / "label.pdf")


async def test_printer_receives_exactly_the_pdf(cups: PrivateCups, pdf: Path) -> None:
    job = await submit(pdf, cups.queue, title="unit 0042", server=cups.server)

    assert re.fullmatch(r"labels-\d+", job)
    assert await wait_printed(job, timeout=10, server=cups.server) is JobState.COMPLETED
    assert await job_state(job, server=cups.server) is JobState.COMPLETED
    [received] = await cups.device.wait_jobs(1)
    assert received.startswith(b"%PDF-")
    assert received == pdf.read_bytes()


async def test_stopped_queue_is_unavailable_although_lp_would_say_yes(
        cups: PrivateCups, pdf: Path) -> None:
    await cups.disable("out of labels")

    with pytest.raises(PrinterUnavailable) as refused:
        await submit(pdf, cups.queue, title="unit 0043", server=cups.server)
    assert "stopped" in refused.value.reason
    assert "out of labels" in refused.value.reason
    assert "cupsenable labels" in refused.value.action
    assert await find_jobs("unit 0043", cups.queue, server=cups.server) == []

    # Why submit asks first: plain `lp` exits 0 and queues the job on a stopped queue ...
    said = await cups.admin("lp", "-d", cups.queue, "-t", "by hand", str(pdf))
    found = re.search(r"request id is (\S+) ", said)
    assert found, said
    # ... where it never prints, and wait_printed says so at once, not after its timeout.
    started = asyncio.get_running_loop().time()
    with pytest.raises(PrinterUnavailable, match="stopped"):
        await wait_printed(found[1], timeout=20, server=cups.server)
    assert asyncio.get_running_loop().time() - started < 5
    assert cups.device.jobs == []

    await cups.enable()
    assert await wait_printed(found[1], timeout=10, server=cups.server) is JobState.COMPLETED
    assert await cups.device.wait_jobs(1) == [pdf.read_bytes()]


async def test_queue_not_accepting_is_unavailable(cups: PrivateCups, pdf: Path) -> None:
    await cups.admin("cupsreject", "-r", "maintenance", cups.queue)

    with pytest.raises(PrinterUnavailable, match="not accepting jobs") as refused:
        await submit(pdf, cups.queue, title="unit 0044", server=cups.server)
    assert "maintenance" in refused.value.reason
    assert "cupsaccept labels" in refused.value.action


async def test_missing_queue_is_unavailable(cups: PrivateCups, pdf: Path) -> None:
    with pytest.raises(PrinterUnavailable, match="no queue"):
        await submit(pdf, "nosuch", title="unit 0045", server=cups.server)
    with pytest.raises(PrinterUnavailable, match="no queue"):
        await find_jobs("unit 0045", "nosuch", server=cups.server)
    with pytest.raises(JobNotFound):
        await job_state("labels-999", server=cups.server)


async def test_cups_down_is_unavailable(pdf: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(PrinterUnavailable, match="does not answer"):
        await submit(pdf, "labels", title="unit 0046", server=nobody)
    with pytest.raises(PrinterUnavailable, match="does not answer"):
        await job_state("labels-1", server=nobody)


async def test_job_waits_while_printer_is_off_then_prints(cups: PrivateCups, pdf: Path) -> None:
    await cups.device.stop()
    job = await submit(pdf, cups.queue, title="unit 0047", server=cups.server)  # lp: fine

    with pytest.raises(PrinterUnavailable, match=r"still (pending|processing) after 1 s"):
        await wait_printed(job, timeout=1, server=cups.server)
    assert await job_state(job, server=cups.server) in {JobState.PENDING, JobState.PROCESSING}
    assert cups.device.jobs == []

    await cups.device.start()  # the socket backend retries about 5 s after its first try
    assert await wait_printed(job, timeout=20, server=cups.server) is JobState.COMPLETED
    assert await cups.device.wait_jobs(1) == [pdf.read_bytes()]


async def test_held_then_canceled_job(cups: PrivateCups, pdf: Path) -> None:
    job = await submit(pdf, cups.queue, title="unit 0048", server=cups.server,
                       options={"job-hold-until": "indefinite"})

    with pytest.raises(PrinterUnavailable, match="held"):
        await wait_printed(job, timeout=10, server=cups.server)
    await cups.admin("cancel", job)
    with pytest.raises(PrintRejected, match="canceled"):
        await wait_printed(job, timeout=10, server=cups.server)
    assert await job_state(job, server=cups.server) is JobState.CANCELED
    assert cups.device.jobs == []


async def test_find_jobs_by_exact_title_in_any_state(cups: PrivateCups, pdf: Path) -> None:
    printed = await submit(pdf, cups.queue, title="unit 0049", server=cups.server)
    await wait_printed(printed, timeout=10, server=cups.server)
    await submit(pdf, cups.queue, title="unit 0049 reprint", server=cups.server)
    held = await submit(pdf, cups.queue, title="unit 0049", server=cups.server,
                        options={"job-hold-until": "indefinite"})

    assert await find_jobs("unit 0049", cups.queue, server=cups.server) == [printed, held]
    assert await find_jobs("unit 004", cups.queue, server=cups.server) == []


async def test_a_finished_job_is_found_after_cups_unloads_it(cups: PrivateCups,
                                                             pdf: Path) -> None:
    """A job nobody watched (its sender died) is unloaded by CUPS soon after it prints, and
    Get-Jobs then leaves its name out; asked with `since`, it is still found by title."""
    since = time.time() - 5
    ours = await submit(pdf, cups.queue, title="unit 0052", server=cups.server)
    await cups.device.wait_jobs(1)
    await asyncio.sleep(2)  # CUPS unloads it meanwhile (about a second here)
    assert await find_jobs("unit 0052", cups.queue, server=cups.server,
                           since=since) == [ours]
    assert await find_jobs("unit 0053", cups.queue, server=cups.server, since=since) == []


async def test_shell_metacharacters_reach_cups_literally(
        cups: PrivateCups, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where any injected `touch pwned` would leave its mark
    marker = tmp_path / "pwned"
    title = "x'; touch pwned; \"$(touch pwned)\" `touch pwned` | tee pwned & $HOME * %s {uci} \\"
    pdf = make_pdf(tmp_path / "-n 9 label $(id).pdf")

    job = await submit(pdf, cups.queue, title=title, server=cups.server)

    assert await wait_printed(job, timeout=10, server=cups.server) is JobState.COMPLETED
    assert await find_jobs(title, cups.queue, server=cups.server) == [job]
    assert await cups.device.wait_jobs(1) == [pdf.read_bytes()]
    assert not marker.exists()


async def test_bad_requests_are_rejected(cups: PrivateCups, pdf: Path, tmp_path: Path) -> None:
    # Refused before lp: lp would split this value into a second option (a job hold).
    with pytest.raises(PrintRejected, match="not a plain CUPS option"):
        await submit(pdf, cups.queue, title="unit 0050", server=cups.server,
                     options={"media": "w50h30 job-hold-until=indefinite"})
    with pytest.raises(PrintRejected, match="copies"):
        await submit(pdf, cups.queue, title="unit 0050", copies=0, server=cups.server)
    with pytest.raises(PrintRejected, match="queue name"):
        await submit(pdf, "two words", title="unit 0050", server=cups.server)
    # Refused by lp itself.
    with pytest.raises(PrintRejected, match="Bad copies value"):
        await submit(pdf, cups.queue, title="unit 0050", server=cups.server,
                     options={"copies": "many"})
    with pytest.raises(PrintRejected, match="unable to access"):
        await submit(tmp_path / "missing.pdf", cups.queue, title="unit 0050",
                     server=cups.server)
    assert await find_jobs("unit 0050", cups.queue, server=cups.server) == []


async def test_server_from_cups_server_or_a_socket_path(
        cups: PrivateCups, pdf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    socket_path = str(cups.root / "cups.sock")  # Debian's own cupsd is /run/cups/cups.sock
    job = await submit(pdf, cups.queue, title="unit 0051", server=socket_path)
    assert await wait_printed(job, timeout=10, server=socket_path) is JobState.COMPLETED

    monkeypatch.setenv("CUPS_SERVER", cups.server)
    assert await find_jobs("unit 0051", cups.queue) == [job]
    assert await job_state(job) is JobState.COMPLETED
