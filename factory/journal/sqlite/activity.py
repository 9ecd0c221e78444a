"""Reads for the status page: event counts in time windows and the units touched last.

A window's events are found by `at` through the index events_at (at, kind, unit_id): `at` is
the wall clock, which steps, so it need not grow with `seq` (events written before the clock
went back carry later times than those after). The index holds what a count reads, so a day's
counts read that day's index entries, never the whole journal nor its rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiosqlite


async def newest_at(conn: aiosqlite.Connection) -> str | None:
    """The latest `at` in the journal (not the last event's: the clock may have gone back)."""
    rows = list(await conn.execute_fetchall("SELECT max(at) FROM events"))
    return rows[0][0] if rows else None


async def count_events(conn: aiosqlite.Connection, counters: Mapping[str, str],
                       since: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """For each counter (`counters` maps event kind → counter) and each window (`since` maps
    window name → journal time it starts), how many units had such an event in the window.
    A unit counts once per counter and window; a station event (no unit) counts each time."""
    names = list(since)
    result = {counter: dict.fromkeys(names, 0) for counter in dict.fromkeys(counters.values())}
    if not names or not counters:
        return result
    kinds = list(counters)
    # A unit is in a window when its latest event for the counter is: group by unit first
    # (integers, one pass), then compare once per window. Much cheaper than DISTINCT per
    # window over UCIs.
    case = " ".join("WHEN ? THEN ?" for _ in kinds)
    windows = ", ".join("sum(last >= ?)" for _ in names)
    sql = (f"SELECT counter, {windows} FROM ("
           f" SELECT CASE kind {case} END AS counter, max(at) AS last FROM events"
           f" INDEXED BY events_at WHERE at >= ? AND kind IN ({', '.join('?' for _ in kinds)})"
           " GROUP BY counter, CASE WHEN unit_id = 0 THEN -seq ELSE unit_id END"
           ") GROUP BY counter")
    args: list[Any] = [since[name] for name in names]
    args += [value for kind in kinds for value in (kind, counters[kind])]
    args += [min(since.values()), *kinds]
    for counter, *counts in await conn.execute_fetchall(sql, args):
        result[counter] = dict(zip(names, counts, strict=True))
    return result


async def recent_unit_ids(conn: aiosqlite.Connection, limit: int,
                          window: int = 5000) -> list[int]:
    """The ids of the units with the newest events, newest first (looking at the last
    `window` events only, so the cost stays flat as the journal grows)."""
    rows = await conn.execute_fetchall(
        "SELECT unit_id, max(seq) AS last FROM events"
        " WHERE seq > (SELECT coalesce(max(seq), 0) FROM events) - ? AND unit_id > 0"
        " GROUP BY unit_id ORDER BY last DESC LIMIT ?", (window, limit))
    return [row[0] for row in rows]
