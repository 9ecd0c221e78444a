"""The fleet page's day on the center (a real private PostgreSQL): each station's units and
failures since the day's start, read in one pass over the day's events, which a BRIN index on
`at` finds; a center made before that index gets it when it next connects."""

from __future__ import annotations

import pytest

from factory.fleet import center, view
from tests.postgres import PrivatePostgres

DAY = "2026-12-07T00:00:00.000Z"


@pytest.fixture
def center_url(private_postgres: PrivatePostgres) -> str:
    return private_postgres.new_database()


async def add_events(conn: view.Conn, rows: list[tuple[str, int, str, str, str]]) -> None:
    """(station, seq, uci, kind, at) rows, as the center holds shipped events."""
    for station in {row[0] for row in rows}:
        await conn.execute("INSERT INTO fleet.stations (station, head_hash) VALUES (%s, '')"
                           " ON CONFLICT DO NOTHING", (station,))
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO fleet.events (station, seq, uci, kind, at, actor, data, hash)"
            " VALUES (%s, %s, %s, %s, %s, 'test', '{}', 'h')", rows)


async def test_each_stations_units_and_failures_of_the_day(center_url: str) -> None:
    conn = await center.connect(center_url)
    try:
        await add_events(conn, [
            ("line-a", 1, "U1", "issued", "2026-12-06T23:59:59.999Z"),  # yesterday
            ("line-a", 2, "U1", "written", "2026-12-07T08:00:00.000Z"),
            ("line-a", 3, "U2", "issued", "2026-12-07T08:01:00.000Z"),
            ("line-a", 4, "U2", "failed", "2026-12-07T08:02:00.000Z"),
            ("line-a", 5, "", "token-added", "2026-12-07T08:03:00.000Z"),  # no unit
            ("line-b", 1, "U3", "failed", "2026-12-07T09:00:00.000Z"),
            ("line-b", 2, "U3", "failed", "2026-12-07T09:05:00.000Z"),
            ("line-c", 1, "U4", "failed", "2026-12-06T12:00:00.000Z"),  # nothing today
        ])
        await conn.execute("INSERT INTO fleet.stations (station, head_hash) VALUES"
                           " ('line-d', '')")  # never shipped an event
        day = [(s["station"], s["units_today"], s["failed_today"])
               for s in await view.fleet(conn, DAY)]
    finally:
        await conn.close()
    assert day == [("line-a", 2, 1), ("line-b", 1, 2), ("line-c", 0, 0), ("line-d", 0, 0)]


async def test_a_center_made_before_the_time_index_gets_it_and_the_day_uses_it(
        center_url: str) -> None:
    conn = await center.connect(center_url)
    try:  # a center from before the index, already holding events
        await conn.execute("DROP INDEX IF EXISTS fleet.fleet_events_at")
        await add_events(conn, [("line-a", n, f"U{n}", "issued", f"2026-12-0{n % 7 + 1}"
                                 "T08:00:00.000Z") for n in range(1, 200)])
    finally:
        await conn.close()
    conn = await center.connect(center_url)
    try:
        found = await (await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'fleet'"
            " AND indexname = 'fleet_events_at'")).fetchall()
        # A table this small is read whole when it can be; without that, the day's query
        # must be able to take the index (the same text comparison as `at >= since`).
        await conn.execute("SET enable_seqscan = off")
        plan = await (await conn.execute(f"EXPLAIN {view.STATIONS_SINCE}", (DAY,))).fetchall()
        day = {s["station"]: s["units_today"] for s in await view.fleet(conn, DAY)}
    finally:
        await conn.close()
    assert len(found) == 1 and "USING brin (at)" in found[0][0]
    assert "fleet_events_at" in "\n".join(row[0] for row in plan)
    assert day == {"line-a": 28}  # n % 7 == 6: n = 6, 13, ..., 195
