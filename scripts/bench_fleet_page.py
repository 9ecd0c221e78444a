"""Benchmark the fleet page's read of the center: "units today" and "failed today" per station
over `--events` events (default 1 M), with each way of indexing `fleet.events.at` built on the
same data in the same run, printed as ratios against no index at all.

Run it from the repository root with the project's virtualenv::

    .venv/bin/python scripts/bench_fleet_page.py
    .venv/bin/python scripts/bench_fleet_page.py --events 5000000 --explain

It starts a private PostgreSQL like the tests do (tests/postgres.py). The events are made in
SQL, as stations ship them: `--stations` interleaved, in time order over `--days` days, one in
fifty a failure. The page is `factory/fleet/view.py:fleet`, called as the fleet page calls it;
"before" is the query it ran before the center had the BRIN index (a subquery per station).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from factory.fleet import center, view
from tests.postgres import PrivatePostgres

INDEX = "fleet.fleet_events_at"
BRIN = ("CREATE INDEX fleet_events_at ON fleet.events USING brin (at)"  # as center.py does
        " WITH (autosummarize = on)")
BTREE = "CREATE INDEX fleet_events_at ON fleet.events (station, at)"
# The page's counts as it read them before the BRIN index: a subquery per station (a B-tree on
# (station, at) would serve these; the one pass over the day's events in view.py cannot).
PER_STATION = (
    "SELECT s.station,"
    " (SELECT count(DISTINCT e.uci) FROM fleet.events AS e WHERE e.station = s.station"
    "  AND e.at >= %(since)s AND e.uci <> ''),"
    " (SELECT count(*) FROM fleet.events AS e WHERE e.station = s.station"
    "  AND e.at >= %(since)s AND e.kind = 'failed')"
    " FROM fleet.stations AS s ORDER BY s.station")
# (what is measured, the index it has, whether it reads as view.py does now)
WAYS = [("before: no index, a subquery per station", "", False),
        ("no index, one pass", "", True),
        ("btree (station, at), a subquery per station", BTREE, False),
        ("btree (station, at), one pass", BTREE, True),
        ("brin (at), one pass (the center's)", BRIN, True)]

FILL = ("""
INSERT INTO fleet.stations (station, head_seq, head_hash)
    SELECT 'line-' || n, 0, '' FROM generate_series(0, %(stations)s - 1) AS n
""", """
INSERT INTO fleet.events (station, seq, uci, kind, at, actor, data, hash)
    SELECT 'line-' || (g %% %(stations)s), g / %(stations)s + 1, 'U' || (g / 4),
           CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'issued' END,
           to_char(now() AT TIME ZONE 'UTC' - make_interval(days => %(days)s)
                   + (g::float8 / %(events)s) * make_interval(days => %(days)s),
                   'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'bench', '{}', md5(g::text)
    FROM generate_series(0, %(events)s - 1) AS g
""")

Counts = list[tuple[str, int, int]]


async def page(conn: view.Conn, since: str, now: bool) -> Counts:
    """Each station's units and failures since `since`, read as the page does (`now`) or as
    it did before."""
    if now:
        return [(row["station"], row["units_today"], row["failed_today"])
                for row in await view.fleet(conn, since)]
    rows = await (await conn.execute(PER_STATION, {"since": since})).fetchall()
    return [(station, int(units), int(failed)) for station, units, failed in rows]


async def timed(conn: view.Conn, since: str, now: bool, rounds: int) -> tuple[float, Counts]:
    await page(conn, since, now)  # warm the cache: every way then reads from memory
    times, counts = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        counts = await page(conn, since, now)
        times.append(time.perf_counter() - start)
    return statistics.median(times), counts


async def run(args: argparse.Namespace, url: str) -> None:
    conn = await center.connect(url)
    try:
        start = time.perf_counter()
        for sql in FILL:
            await conn.execute(sql, {"stations": args.stations, "events": args.events,
                                     "days": args.days})
        await conn.execute("VACUUM ANALYZE fleet.events")
        print(f"{args.events} events, {args.stations} stations, {args.days} days (made in "
              f"{time.perf_counter() - start:.0f} s); the page's day: the last {args.hours} h")
        since = (await (await conn.execute(
            "SELECT to_char(max(at)::timestamp - make_interval(hours => %s),"
            " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM fleet.events",
            (args.hours,))).fetchone() or [""])[0]
        baseline, expected = 0.0, None
        for way, index, now in WAYS:
            await conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
            if index:
                await conn.execute(index)
            await conn.execute("ANALYZE fleet.events")
            size = (await (await conn.execute(
                "SELECT coalesce(pg_relation_size(to_regclass(%s)), 0)",
                (INDEX,))).fetchone() or [0])[0]
            seconds, counts = await timed(conn, since, now, args.rounds)
            if expected is None:
                baseline, expected = seconds, counts
            assert counts == expected, f"{way}: other counts than before"
            print(f"  {way:44} {seconds * 1000:8.1f} ms {baseline / seconds:7.1f}x before,"
                  f" index {size / 1024:7.0f} KiB")
            if args.explain:
                sql, params = (view.STATIONS_SINCE, (since,)) if now else \
                    (PER_STATION, {"since": since})
                plan = await (await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}",
                                                 params)).fetchall()
                print("\n".join(f"      {row[0]}" for row in plan))
        print(f"  (units in the day across the fleet: {sum(c[1] for c in expected or [])})")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--stations", type=int, default=8)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--hours", type=int, default=24, help="the page's day, up to the "
                        "newest event (24: the end of a day, the most it reads)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--explain", action="store_true", help="print each way's plan")
    args = parser.parse_args()
    server = PrivatePostgres()
    server.start()
    try:
        asyncio.run(run(args, server.new_database()))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
