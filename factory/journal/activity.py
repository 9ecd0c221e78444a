"""Reads for the status page: event counts in time windows and the units touched last.

Events carry no index on `at`, but `at` grows with `seq` (one writer stamps each batch), so
the first event of a window is found by a binary search over `seq` inside SQLite: a day's
counts scan that day's events, never the whole journal.
"""

from __future__ import annotations

import json
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
    if not since:
        return {}
    start = await first_seq_since(conn, min(since.values()))
    names = list(since)
    columns = ", ".join(
        f"count(DISTINCT CASE WHEN e.at >= :w{i} AND e.uci <> '' THEN e.uci END)"
        f" + coalesce(sum(e.at >= :w{i} AND e.uci = ''), 0)" for i in range(len(names)))
    args: dict[str, Any] = {f"w{i}": since[name] for i, name in enumerate(names)}
    args |= {"start": start, "map": json.dumps(dict(counters))}
    rows = await conn.execute_fetchall(
        f"SELECT m.value, {columns} FROM events AS e"
        " JOIN json_each(:map) AS m ON m.key = e.kind"
        " WHERE e.seq >= :start GROUP BY m.value", args)
    found = {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}
    return {counter: found.get(counter, dict.fromkeys(names, 0))
            for counter in dict.fromkeys(counters.values())}


async def recent_unit_ids(conn: aiosqlite.Connection, limit: int,
                          window: int = 5000) -> list[int]:
    """The ids of the units with the newest events, newest first (looking at the last
    `window` events only, so the cost stays flat as the journal grows)."""
    rows = await conn.execute_fetchall(
        "SELECT unit_id, max(seq) AS last FROM events"
        " WHERE seq > (SELECT coalesce(max(seq), 0) FROM events) - ? AND unit_id > 0"
        " GROUP BY unit_id ORDER BY last DESC LIMIT ?", (window, limit))
    return [row[0] for row in rows]
