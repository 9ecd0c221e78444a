"""Reads for the status page: event counts in time windows and the units touched last.

Events carry no index on `at`, but `at` grows with `seq` (one writer stamps each batch), so
the first event of a window is found by a binary search over `seq` inside SQLite: a day's
counts scan that day's events, never the whole journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiosqlite

# Binary search for the first seq whose `at` is at or after the bound (:at). A missing seq
# reads as "before", which at worst counts a few events too many.
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


async def first_seq_since(conn: aiosqlite.Connection, at: str) -> int:
    """The seq of the first event journaled at or after `at` (past the end if none)."""
    rows = list(await conn.execute_fetchall(_FIRST_SEQ, {"at": at}))
    return int(rows[0][0])


async def count_events(conn: aiosqlite.Connection, counters: Mapping[str, str],
                       since: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """For each counter (`counters` maps event kind → counter) and each window (`since` maps
    window name → journal time it starts), how many units had such an event in the window.
    A unit counts once per counter and window; a station event (no unit) counts each time."""
    names = list(since)
    starts = [await first_seq_since(conn, since[name]) for name in names]
    result = {counter: dict.fromkeys(names, 0) for counter in dict.fromkeys(counters.values())}
    if not names or not counters:
        return result
    kinds = list(counters)
    # A unit is in a window when its newest event for the counter is: group by unit first
    # (integers, one pass), then compare once per window. Much cheaper than DISTINCT per
    # window over UCIs.
    case = " ".join("WHEN ? THEN ?" for _ in kinds)
    windows = ", ".join("sum(last >= ?)" for _ in names)
    sql = (f"SELECT counter, {windows} FROM ("
           f" SELECT CASE kind {case} END AS counter, max(seq) AS last FROM events"
           f" WHERE seq >= ? AND kind IN ({', '.join('?' for _ in kinds)})"
           " GROUP BY counter, CASE WHEN unit_id = 0 THEN -seq ELSE unit_id END"
           ") GROUP BY counter")
    args: list[Any] = [*starts]
    args += [value for kind in kinds for value in (kind, counters[kind])]
    args += [min(starts), *kinds]
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
