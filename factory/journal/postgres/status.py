"""What the status page, the metrics and the watchdog read: this station's part of the
database (its units, its events)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factory.journal.postgres import rows as r
from factory.journal.postgres.core import Core
from factory.journal.postgres.rows import EVENT_COLUMNS, UNIT_COLUMNS
from factory.journal.records import Event, Unit


class StatusReads(Core):
    async def ping(self) -> None:
        """Raise JournalUnavailable unless the journal answers a query."""
        await self._read("SELECT 1 FROM schema_migrations LIMIT 1")

    async def stats(self) -> dict[str, int]:
        """This station's unit counts by state."""
        rows = await self._read("SELECT state, count(*) FROM units WHERE station = %s"
                                " GROUP BY state", (self.station,))
        return {state: int(n) for state, n in rows}

    async def newest_at(self) -> str | None:
        rows = await self._read("SELECT max(at) FROM events WHERE station = %s",
                                (self.station,))
        return rows[0][0] if rows else None

    async def behind(self, after: int) -> tuple[int, str | None]:
        """This station's events after seq `after` (its seqs have no gap), the first's `at`."""
        rows = await self._read(
            "SELECT (SELECT max(seq) FROM events WHERE station = %s),"
            " (SELECT at FROM events WHERE station = %s AND seq = %s)",
            (self.station, self.station, after + 1))
        newest, first = rows[0]
        return max(0, int(newest or 0) - after), first

    async def count_events(self, counters: Mapping[str, str],
                           since: Mapping[str, str]) -> dict[str, dict[str, int]]:
        """Units with events of the mapped kinds per counter and window, as SQLite's
        activity.count_events: a unit counts once, a station event each time."""
        names = list(since)
        result = {c: dict.fromkeys(names, 0) for c in dict.fromkeys(counters.values())}
        if not names or not counters:
            return result
        kinds = list(counters)
        windows = ", ".join("count(*) FILTER (WHERE last >= %s)" for _ in names)
        sql = (f"SELECT counter, {windows} FROM ("
               " SELECT j.counter, max(e.at) AS last FROM events AS e"
               " JOIN unnest(%s::text[], %s::text[]) AS j(kind, counter) ON e.kind = j.kind"
               " WHERE e.station = %s AND e.at >= %s"
               " GROUP BY j.counter, CASE WHEN e.uci = '' THEN e.seq::text ELSE e.uci END"
               ") AS t GROUP BY counter")
        args: list[Any] = [since[name] for name in names]
        args += [kinds, [counters[k] for k in kinds], self.station, min(since.values())]
        for counter, *counts in await self._read(sql, args):
            result[counter] = {name: int(n) for name, n in zip(names, counts, strict=True)}
        return result

    async def recent_units(self, limit: int = 20) -> list[Unit]:
        """The units with this station's newest events, newest first, with all their events."""
        ids = [row[0] for row in await self._read(
            "SELECT uci, max(seq) AS last FROM events WHERE station = %s AND uci <> ''"
            " AND seq > (SELECT coalesce(max(seq), 0) FROM events WHERE station = %s) - 5000"
            " GROUP BY uci ORDER BY last DESC LIMIT %s", (self.station, self.station, limit))]
        if not ids:
            return []
        events: dict[str, list[Event]] = {uci: [] for uci in ids}
        for row in await self._read(f"SELECT {EVENT_COLUMNS} FROM events WHERE uci = ANY(%s)"
                                    " ORDER BY id", (ids,)):
            events[row[1]].append(r.event(row))
        units = {row[0]: r.unit(row, events[row[0]]) for row in await self._read(
            f"SELECT {UNIT_COLUMNS} FROM units WHERE uci = ANY(%s)", (ids,))}
        return [units[uci] for uci in ids if uci in units]
