"""The wall clock stepping, as an outside probe made it: a day ahead, back across a restart,
then on. Counts by window stay right, outbox entries wait no longer than their backoff says,
the backlog's age does not read 0, and the page says the clock went back and what to do.

The machine's clock is never touched: the station reads the wall clock from `factory.clock`
(and journal times from `writer.utc_now`), which these tests replace."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from factory.config import StationConfig
from factory.journal.backlog import backlog
from factory.journal.interface import Journal
from factory.journal.postgres import writer as pg_writer
from factory.journal.records import IssueRequest
from factory.journal.sqlite import writer
from factory.status import snapshot
from factory.status.shifts import journal_time
from factory.status.snapshot import LiveSources
from factory.upstream.adapter import (
    Certificate,
    DeviceStatus,
    RegisterResult,
    Registration,
    RetryableError,
)
from factory.upstream.outbox import OutboxWorker
from factory.web.status_html import render
from tests.conftest import PRODUCT, Station, register_request

NOW = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)  # the probe's "today", after the step back
AHEAD = NOW + timedelta(days=1)  # the clock before it: a day fast


def at_times(monkeypatch: pytest.MonkeyPatch, start: datetime) -> None:
    """From now on the journal stamps its batches from `start` on, a second apart."""
    times = (journal_time(start + timedelta(seconds=i)) for i in itertools.count())
    stamp = lambda: next(times)  # noqa: E731
    monkeypatch.setattr(writer, "utc_now", stamp)
    monkeypatch.setattr(pg_writer, "utc_now", stamp)


async def issue_units(journal: Journal, count: int, tag: int) -> list[str]:
    ucis = []
    for i in range(count):
        result = await journal.issue(IssueRequest(PRODUCT, "test",
                                                  hardware_id=f"02:00:00:00:{tag:02x}:{i:02x}"))
        ucis += result.ucis
    return ucis


async def probe_day(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """26 units while the clock ran a day ahead, then 26 after it went back."""
    at_times(monkeypatch, AHEAD)
    await issue_units(journal, 26, 1)
    at_times(monkeypatch, NOW)
    await issue_units(journal, 26, 2)


async def test_counts_stay_right_when_the_clock_went_back(
        journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    await probe_day(journal, monkeypatch)
    counts = await journal.count_events(
        {"issued": "issued"},
        {"today": "2024-05-02T00:00:00.000Z", "since_ten": "2024-05-02T10:00:00.000Z",
         "tomorrow": "2024-05-03T00:00:00.000Z", "later": "2024-05-04T00:00:00.000Z"})
    # Before: a binary search over seq assumed `at` grows with it and found 27 for today.
    assert counts == {"issued": {"today": 52, "since_ten": 52, "tomorrow": 26, "later": 0}}


async def test_the_page_says_the_clock_went_back_and_what_to_do(
        station: Station, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found at start: the journal's newest event is later than now."""
    behind = datetime.now(UTC).replace(microsecond=0)
    at_times(monkeypatch, behind + timedelta(days=1))
    await issue_units(station.journal, 2, 3)
    at_times(monkeypatch, behind)
    await issue_units(station.journal, 1, 4)
    resp = await station.client.get("/api/v1/status", headers=station.auth("viewer"))
    snap = await resp.json()
    [alert] = [a for a in snap["attention"] if a["source"] == "clock"]
    assert "clock went back 1 d 0 h or more before" in alert["what"]
    assert "NTP" in alert["action"] and "counts by shift and today may be off" \
        in alert["action"]
    assert "The station&#x27;s clock went back" in render(snap)


async def test_a_step_while_running_is_shown(config: StationConfig, journal: Journal,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from factory import clock  # the station's one wall clock

    live = LiveSources()
    wall = datetime.now(UTC)
    monkeypatch.setattr(clock, "now", lambda: wall)
    first = await snapshot.build(config, journal, live, tz=UTC)
    assert first["attention"] == []
    wall -= timedelta(hours=2)  # NTP steps it back while the monotonic clock runs on
    second = await snapshot.build(config, journal, live, tz=UTC)
    [alert] = second["attention"]
    assert alert["source"] == "clock" and "went back 2 h 0 min" in alert["what"]
    wall += timedelta(minutes=1)  # it stays up a while after, though nothing else shows it
    assert [a["source"] for a in (await snapshot.build(config, journal, live, tz=UTC))[
        "attention"]] == ["clock"]


async def test_an_entry_due_a_day_ahead_is_due_now(journal: Journal) -> None:
    """Its due time was set while the clock ran a day fast: no backoff sets one that far."""
    [uci] = await issue_units(journal, 1, 5)
    await journal.record(uci, "verified", "test", {}, state="verified",
                         enqueue=register_request(uci))
    [entry] = await journal.outbox_due(now=1e12)
    await journal.outbox_retry(entry.id, 1, datetime.now(UTC).timestamp() + 86400, "503")
    upstream = Upstream()
    worker = OutboxWorker(journal, upstream, cap=300.0)
    assert await worker.drain_once() == 1
    assert upstream.sent == [uci]


async def test_a_step_back_while_waiting_does_not_lengthen_the_wait(
        journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    from factory import clock

    [uci] = await issue_units(journal, 1, 6)
    await journal.record(uci, "verified", "test", {}, state="verified",
                         enqueue=register_request(uci))
    wall, mono = datetime.now(UTC), 1000.0
    monkeypatch.setattr(clock, "now", lambda: wall)
    monkeypatch.setattr(clock, "monotonic", lambda: mono)
    upstream = Upstream(fail=1)
    worker = OutboxWorker(journal, upstream, base=60.0, cap=60.0, rng=random.Random(1))
    assert await worker.drain_once() == 0  # refused: waits up to a minute
    wall -= timedelta(minutes=30)  # back, by less than any backoff's longest wait
    mono += 61.0
    wall += timedelta(seconds=61)
    assert await worker.drain_once() == 1
    assert upstream.sent == [uci, uci]


async def test_a_backlog_queued_before_the_step_back_ages_and_alerts(
        config: StationConfig, journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    from factory import clock

    at_times(monkeypatch, AHEAD)
    [uci] = await issue_units(journal, 1, 7)
    await journal.record(uci, "verified", "test", {}, state="verified",
                         enqueue=register_request(uci))
    outbox = await backlog(journal, limit=0, now=NOW)
    assert outbox["oldest_age_seconds"] != 0.0  # not "0 s": it is a day "in the future"
    mono = 50.0
    monkeypatch.setattr(clock, "monotonic", lambda: mono)
    live = LiveSources()
    await snapshot.build(config, journal, live, NOW, UTC)
    mono += config.status.backlog_alert_minutes * 60 + 1
    snap = await snapshot.build(config, journal, live, NOW, UTC)
    assert snap["upstream"]["oldest_age_seconds"] >= config.status.backlog_alert_minutes * 60
    assert any("not registered for" in a["what"] for a in snap["attention"])


class Upstream:
    """Registers every unit (after refusing the first `fail` attempts)."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[str] = []
        self._fail = fail

    async def register(self, device: Registration) -> RegisterResult:
        self.sent.append(device.uci)
        if self._fail:
            self._fail -= 1
            raise RetryableError("503 from the test", status=503)
        return RegisterResult(created=True, device=None)  # type: ignore[arg-type]

    async def preclaim(self, uci: str, account: str, csr_pem: str) -> Certificate:
        raise NotImplementedError

    async def lookup(self, uci: str) -> DeviceStatus:
        raise NotImplementedError


def test_slewing_is_no_step_and_a_step_is_shown_for_a_while() -> None:
    from factory.clock import StepWatch

    watch, wall = StepWatch(tolerance=60.0, show_for=3600.0), NOW
    assert watch.look(wall, 0.0) is None
    assert watch.look(wall + timedelta(seconds=130), 100.0) is None  # NTP slewing 30 s
    step = watch.look(wall + timedelta(hours=1), 200.0)  # a step forward of about an hour
    assert step is not None and 3300 < step.seconds < 3400 and step.seen
    assert watch.look(wall + timedelta(hours=2), 200.0 + 3599) is step
    assert watch.look(wall + timedelta(hours=2, seconds=2), 200.0 + 3601) is None
    later = NOW + timedelta(days=1)  # the journal is a day ahead: shown as long as it is
    told = watch.look(wall + timedelta(hours=2, seconds=3), 200.0 + 3602, later)
    assert told is not None and not told.seen and told.seconds < -70000
