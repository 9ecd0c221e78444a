"""What the status page, the metrics and the watchdog read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

import aiosqlite

from factory.journal.errors import JournalUnavailable
from factory.journal.records import Event, Unit
from factory.journal.sqlite import activity
from factory.journal.sqlite import rows as r
from factory.journal.sqlite.connection import connect
from factory.journal.sqlite.core import Core
from factory.journal.sqlite.rows import EVENT_COLUMNS, UNIT_COLUMNS


class StatusReads(Core):
    async def ping(self) -> None:
        """Raise JournalUnavailable unless the journal answers a query."""
        try:
            await self._reader.execute_fetchall("SELECT 1 FROM schema_migrations LIMIT 1")
        except sqlite3.Error as exc:
            raise JournalUnavailable(f"journal {self.path} does not answer: {exc}") from exc

    async def count_events(self, counters: Mapping[str, str],
                           since: Mapping[str, str]) -> dict[str, dict[str, int]]:
        """Units with events of the mapped kinds per counter and time window (activity.py)."""
        return await activity.count_events(await self._side_reader(), counters, since)

    async def newest_at(self) -> str | None:
        """The latest `at` any event carries (later than now if the clock went back)."""
        return await activity.newest_at(await self._side_reader())

    async def behind(self, after: int) -> tuple[int, str | None]:
        """Events after seq `after` (seqs run 1, 2, 3, … with no gap) and the first's `at`."""
        rows = list(await self._reader.execute_fetchall(
            "SELECT (SELECT max(seq) FROM events), (SELECT at FROM events WHERE seq = ?)",
            (after + 1,)))
        newest, first = rows[0]
        return max(0, (newest or 0) - after), first

    async def _side_reader(self) -> aiosqlite.Connection:
        """A reader of its own for the status page's counts (a day of events), so the
        station's quick reads (tokens, units) never queue behind them."""
        async with self._side_lock:
            if self._side is None:
                self._side = await connect(self.path)
            return self._side

    async def recent_units(self, limit: int = 20) -> list[Unit]:
        """The units with the newest events, newest first, each with all its events."""
        ids = await activity.recent_unit_ids(self._reader, limit)
        if not ids:
            return []
        key = json.dumps(ids)
        rows = await self._reader.execute_fetchall(
            f"SELECT id, {UNIT_COLUMNS} FROM units WHERE id IN (SELECT value FROM json_each(?))",
            (key,))
        events: dict[int, list[Event]] = {i: [] for i in ids}
        for row in await self._reader.execute_fetchall(
                f"SELECT unit_id, {EVENT_COLUMNS} FROM events"
                " WHERE unit_id IN (SELECT value FROM json_each(?)) ORDER BY seq", (key,)):
            events[row[0]].append(r.event(row[1:]))
        by_id = {row[0]: r.unit(row[1:], events[row[0]]) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def stats(self) -> dict[str, int]:
        """Unit counts by state."""
        async with self._reader.execute(
                "SELECT state, count(*) FROM units GROUP BY state") as cur:
            return {state: n for state, n in await cur.fetchall()}
