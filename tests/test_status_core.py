"""The status page's pure parts: shift windows, what needs a person, the coalescing feed,
and the [status] config table."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from factory.config import ConfigError, load
from factory.status.attention import duration, fixture_alert, printer_alert, upstream_alerts
from factory.status.feed import StatusFeed
from factory.status.shifts import journal_time, windows
from tests.conftest import CONFIG_TEXT, write_config

SHIFTS = ("06:00", "14:00", "22:00")


@pytest.mark.parametrize(("now", "shift", "start"), [
    ("2024-05-01T13:59:59", "06:00", "2024-05-01T06:00:00.000Z"),
    ("2024-05-01T14:00:00", "14:00", "2024-05-01T14:00:00.000Z"),
    ("2024-05-01T23:30:00", "22:00", "2024-05-01T22:00:00.000Z"),
    # Before the day's first shift: yesterday's last shift is still on.
    ("2024-05-01T05:00:00", "22:00", "2024-04-30T22:00:00.000Z"),
])
def test_the_running_shift(now: str, shift: str, start: str) -> None:
    win = windows(SHIFTS, datetime.fromisoformat(now).replace(tzinfo=UTC), UTC)
    assert (win.shift, journal_time(win.shift_start)) == (shift, start)
    assert journal_time(win.day_start) == "2024-05-01T00:00:00.000Z"
    assert win.journal_times()["hour"] < journal_time(datetime.fromisoformat(now + "+00:00"))


def test_windows_follow_local_time_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # clocks went forward at 02:00 on 2024-03-31
    win = windows(SHIFTS, datetime(2024, 3, 31, 10, 0, tzinfo=UTC), berlin)
    assert journal_time(win.day_start) == "2024-03-30T23:00:00.000Z"  # midnight, +01:00
    assert journal_time(win.shift_start) == "2024-03-31T04:00:00.000Z"  # 06:00, +02:00


def test_what_needs_a_person() -> None:
    assert fixture_alert("f1", "writing", "", "") is None
    failed = fixture_alert("f1", "failed", "the unit did not answer", "plug it in again")
    assert failed is not None and "f1" in failed.what and "did not answer" in failed.what
    assert failed.action == "plug it in again"
    port = fixture_alert("f2", "port-error", "/dev/ttyUSB1 does not exist", "")
    assert port is not None and port.action  # always something to do
    assert printer_alert("lp1", "idle", "") is None
    assert printer_alert("lp1", "unavailable", "queue stopped") is not None
    assert upstream_alerts("", 3, 60.0, 30) == []  # a young backlog is normal
    old = upstream_alerts("", 3, 31 * 60.0, 30)
    assert len(old) == 1 and "3 units not registered for 31 min" in old[0].what
    refused = upstream_alerts("401: bad token", 0, None, 30)
    assert len(refused) == 1 and "bad token" in refused[0].what


@pytest.mark.parametrize(("seconds", "text"), [
    (5, "5 s"), (125, "2 min"), (3 * 3600 + 20 * 60, "3 h 20 min"), (2 * 86400 + 4 * 3600,
                                                                      "2 d 4 h")])
def test_durations_for_people(seconds: float, text: str) -> None:
    assert duration(seconds) == text


async def test_a_burst_of_changes_is_one_snapshot_for_every_page() -> None:
    built: list[int] = []

    async def build() -> dict[str, object]:
        built.append(len(built) + 1)
        return {"n": len(built)}

    feed = StatusFeed(build, lambda: None, debounce=0.05, watch=0.02)
    task = asyncio.create_task(feed.run())
    try:
        with feed.subscribe() as first, feed.subscribe() as second:
            for _ in range(50):
                feed.poke()
            got = [await anext(aiter(first)), await anext(aiter(second))]
            assert got == [{"n": 1}, {"n": 1}] and built == [1]
            feed.close()  # the station stops: every open page is let go
            assert [s async for s in first] == [] and [s async for s in second] == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_in_memory_changes_reach_the_pages() -> None:
    state = {"fixture": "waiting"}

    async def build() -> dict[str, object]:
        return dict(state)

    feed = StatusFeed(build, lambda: state["fixture"], debounce=0.01, watch=0.02)
    task = asyncio.create_task(feed.run())
    try:
        with feed.subscribe() as page:
            await asyncio.sleep(0.05)  # the feed has seen "waiting"
            state["fixture"] = "writing"  # no journal write, no poke
            assert await anext(aiter(page)) == {"fixture": "writing"}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_status_config(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, CONFIG_TEXT + """
[status]
shifts = ["07:00", "19:00"]
open_networks = ["192.168.10.0/24", "::1/128"]
backlog_alert_minutes = 10
"""))
    assert config.status.shifts == ("07:00", "19:00")
    assert [str(n) for n in config.status.open_networks] == ["192.168.10.0/24", "::1/128"]
    assert config.status.backlog_alert_minutes == 10
    default = load(write_config(tmp_path, CONFIG_TEXT)).status
    assert default.shifts == SHIFTS and default.open_networks == ()


@pytest.mark.parametrize(("table", "key", "reason"), [
    ('shifts = ["6:00"]', "status.shifts[0]", 'local time "HH:MM"'),
    ('shifts = ["14:00", "06:00"]', "status.shifts[1]", "must come after 14:00"),
    ("shifts = []", "status.shifts", "1 to 24"),
    ('open_networks = ["10.0.0.1/8"]', "status.open_networks[0]", "not a CIDR network"),
    ("backlog_alert_minutes = 0", "status.backlog_alert_minutes", "1 to 10080"),
    ("shift = []", "status.shift", "not a known setting"),
])
def test_bad_status_config_names_file_key_and_reason(tmp_path: Path, table: str, key: str,
                                                     reason: str) -> None:
    path = write_config(tmp_path, CONFIG_TEXT + f"\n[status]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.source, info.value.key) == (str(path), key)
    assert reason in info.value.reason


async def test_a_costly_snapshot_is_not_rebuilt_back_to_back() -> None:
    # A big day makes each snapshot slow; under steady changes the feed rests three times as
    # long as a build took before the next, instead of building without pause.
    spans: list[tuple[float, float]] = []

    async def build() -> dict[str, object]:
        started = time.monotonic()
        await asyncio.sleep(0.05)
        spans.append((started, time.monotonic()))
        return {"n": len(spans)}

    feed = StatusFeed(build, lambda: None, debounce=0.001, watch=0.005, pace=3.0)
    task = asyncio.create_task(feed.run())
    try:
        with feed.subscribe():
            while len(spans) < 4:
                feed.poke()  # a journal commit every few milliseconds
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    for (start, end), (next_start, _) in itertools.pairwise(spans):
        assert next_start - end >= 3.0 * (end - start) - 0.01


async def test_a_page_that_opens_gets_the_fresh_snapshot_without_a_build() -> None:
    built: list[int] = []

    async def build() -> dict[str, object]:
        built.append(len(built) + 1)
        return {"n": len(built)}

    feed = StatusFeed(build, lambda: None, debounce=0.001, watch=0.005, fresh=0.2)
    task = asyncio.create_task(feed.run())
    try:
        with feed.subscribe() as open_page:
            feed.poke()
            assert await anext(aiter(open_page)) == {"n": 1}
            with feed.subscribe() as new_page:
                assert await feed.first() == {"n": 1} and built == [1]  # shared, not rebuilt
                feed.poke()  # a change after it still reaches the new page
                assert await anext(aiter(new_page)) == {"n": 2}
            await asyncio.sleep(0.25)
            assert await feed.first() == {"n": 3}  # too old by now: built afresh
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
