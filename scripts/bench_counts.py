"""Benchmark the status snapshot's count query on a big journal: before issue 16 (a binary
search of `at` over `seq`, which is wrong once the clock steps back) and now (the window's
events found by `at` through the index events_at).

Run it from the repository root with the project's virtualenv::

    .venv/bin/python scripts/bench_counts.py                     # 1,000,000 events
    .venv/bin/python scripts/bench_counts.py --events 200000 --days 5

It builds a journal with the station's own migrations up to 0003 (events inserted straight
into the table, five per unit over `--days` days, the last day being "today"), times the old
query, applies 0004_events_at (timed: a station upgraded on a full journal pays it once at
start) and times the new one, for the windows the page counts (shift, today, hour). Each
query runs `--repeat` times; the median is reported, and the ratio new / old.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from factory.journal.sqlite import activity
from factory.journal.sqlite.migrations import MIGRATIONS
from factory.status.attention import COUNTERS
from factory.status.shifts import journal_time

KINDS = ("issued", "written", "verified", "labelled", "registered")
# The query before issue 16, verbatim (activity.py at 65dc099).
_FIRST_SEQ = """
WITH RECURSIVE search(lo, hi) AS (
    SELECT coalesce((SELECT min(seq) FROM events), 1),
           coalesce((SELECT max(seq) FROM events), 0) + 1
    UNION ALL
    SELECT CASE WHEN (SELECT at FROM events WHERE seq = (lo + hi) / 2) >= :at
                THEN lo ELSE (lo + hi) / 2 + 1 END,
           CASE WHEN (SELECT at FROM events WHERE seq = (lo + hi) / 2) >= :at
                THEN (lo + hi) / 2 ELSE hi END
    FROM search WHERE lo < hi
)
SELECT min(lo) FROM search WHERE lo >= hi
"""


async def old_count(conn: aiosqlite.Connection, counters: dict[str, str],
                    since: dict[str, str]) -> dict[str, dict[str, int]]:
    names = list(since)
    starts = [next(iter(await conn.execute_fetchall(_FIRST_SEQ, {"at": since[n]})))[0]
              for n in names]
    result = {counter: dict.fromkeys(names, 0) for counter in dict.fromkeys(counters.values())}
    kinds = list(counters)
    case = " ".join("WHEN ? THEN ?" for _ in kinds)
    windows = ", ".join("sum(last >= ?)" for _ in names)
    sql = (f"SELECT counter, {windows} FROM ("
           f" SELECT CASE kind {case} END AS counter, max(seq) AS last FROM events"
           f" WHERE seq >= ? AND kind IN ({', '.join('?' for _ in kinds)})"
           " GROUP BY counter, CASE WHEN unit_id = 0 THEN -seq ELSE unit_id END"
           ") GROUP BY counter")
    args: list[Any] = [*starts, *(v for k in kinds for v in (k, counters[k])), min(starts),
                       *kinds]
    for counter, *counts in await conn.execute_fetchall(sql, args):
        result[counter] = dict(zip(names, counts, strict=True))
    return result


def rows(events: int, days: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    start = now - timedelta(days=days)
    step = timedelta(days=days) / events
    for seq in range(1, events + 1):
        unit = (seq - 1) // len(KINDS) + 1
        kind = KINDS[(seq - 1) % len(KINDS)]
        data = '{"product": "air"}' if kind == "issued" else "{}"
        yield (seq, unit, f"U{unit:015d}", kind, journal_time(start + step * seq), "s1",
               "bench", data, "0" * 64)


def build(path: Path, events: int, days: int, now: datetime) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for _, sql in MIGRATIONS[:3]:
        conn.executescript(sql)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     rows(events, days, now))
    conn.execute("COMMIT")
    conn.close()


async def timed(repeat: int, run: Any) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    since = {"shift": journal_time(now - timedelta(hours=6)),
             "today": journal_time(now - timedelta(hours=23)),  # late in the day: the most
             "hour": journal_time(now - timedelta(hours=1))}
    counters: dict[str, str] = {kind: counter for kind, counter in COUNTERS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.db"
        started = time.perf_counter()
        build(path, args.events, args.days, now)
        built = time.perf_counter() - started
        size_before = path.stat().st_size
        async with aiosqlite.connect(path) as conn:
            before, old = await timed(args.repeat, lambda: old_count(conn, counters, since))
            started = time.perf_counter()
            await conn.executescript(MIGRATIONS[3][1])
            migrated = time.perf_counter() - started
            after, new = await timed(args.repeat, lambda: activity.count_events(
                conn, counters, since))
            newest, _ = await timed(args.repeat, lambda: activity.newest_at(conn))
            await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size_after = path.stat().st_size
    print(json.dumps({
        "events": args.events, "days": args.days, "build_s": round(built, 1),
        "old_count_s": round(before, 4), "new_count_s": round(after, 4),
        "ratio_new_over_old": round(after / before, 2),
        "newest_at_s": round(newest, 5), "migration_0004_s": round(migrated, 2),
        "journal_mb_before": round(size_before / 2**20, 1),
        "journal_mb_after": round(size_after / 2**20, 1),
        "same_counts": old == new, "counts_today": {k: v["today"] for k, v in new.items()},
    }, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
