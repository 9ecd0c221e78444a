"""Reads of units and their events."""

from __future__ import annotations

import json

from factory.journal.errors import UnitNotFound
from factory.journal.records import Unit
from factory.journal.sqlite import rows as r
from factory.journal.sqlite.core import Core
from factory.journal.sqlite.rows import EVENT_COLUMNS, UNIT_COLUMNS


class UnitReads(Core):
    async def unit(self, uci: str) -> Unit:
        """A unit with all its events."""
        rows = list(await self._reader.execute_fetchall(
            f"SELECT id, {UNIT_COLUMNS} FROM units WHERE uci = ?", (uci,)))
        if not rows:
            raise UnitNotFound(uci)
        events = [r.event(row) for row in await self._reader.execute_fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE unit_id = ? AND uci = ? ORDER BY seq",
            (rows[0][0], uci))]
        return r.unit(rows[0][1:], events)

    async def many(self, ucis: list[str], kinds: tuple[str, ...],
                   page: int = 5000) -> dict[str, Unit]:
        """The units named (those that exist), each with its events of `kinds` only: one
        query per page of UCIs rather than one per unit (batch runs over thousands)."""
        found: dict[str, Unit] = {}
        for start in range(0, len(ucis), page):
            names = json.dumps(ucis[start:start + page])
            for row in await self._reader.execute_fetchall(
                    f"SELECT {UNIT_COLUMNS} FROM units WHERE uci IN"
                    " (SELECT value FROM json_each(?))", (names,)):
                unit = r.unit(row, [])
                found[unit.uci] = unit
            columns = ", ".join(f"e.{c.strip()}" for c in EVENT_COLUMNS.split(","))
            for row in await self._reader.execute_fetchall(
                    f"SELECT {columns} FROM units AS u JOIN events AS e ON e.unit_id = u.id"
                    " WHERE u.uci IN (SELECT value FROM json_each(?)) AND e.kind IN"
                    " (SELECT value FROM json_each(?)) ORDER BY e.seq",
                    (names, json.dumps(kinds))):
                event = r.event(row)
                found[event.uci].events.append(event)
        return found

    async def units(self, *, state: str | None = None, product: str | None = None,
                    limit: int = 100, before: int | None = None) -> tuple[list[Unit], int | None]:
        """Units newest first; returns the page and the cursor for the next one (or None)."""
        clauses: list[str] = ["1"]
        args: list[str | int] = []
        for column, value in (("state", state), ("product", product)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            clauses.append("id < ?")
            args.append(before)
        sql = (f"SELECT id, {UNIT_COLUMNS} FROM units WHERE {' AND '.join(clauses)}"
               " ORDER BY id DESC LIMIT ?")
        async with self._reader.execute(sql, (*args, limit + 1)) as cur:
            rows = list(await cur.fetchall())
        page = [r.unit(row[1:]) for row in rows[:limit]]
        return page, (rows[limit - 1][0] if len(rows) > limit else None)

    async def live_units_for_hardware(self, hardware_id: str) -> list[Unit]:
        """Units not voided that carry this hardware id, in any product."""
        rows = await self._reader.execute_fetchall(
            f"SELECT {UNIT_COLUMNS} FROM units WHERE hardware_id = ? AND state <> 'voided'",
            (hardware_id,))
        return [r.unit(row) for row in rows]

    async def labels_owed(self, limit: int = 200) -> list[str]:
        """UCIs whose newest label the printer still owes, oldest first."""
        async with self._reader.execute(
                "SELECT uci FROM labels_owed ORDER BY seq LIMIT ?", (limit,)) as cur:
            return [row[0] async for row in cur]

    async def left_in(self, state: str, before: str, sample: int = 3) -> tuple[int, list[str]]:
        """How many units have been in `state` since before `before` (a journal time), and
        the oldest few of them."""
        args = (state, before)
        async with self._reader.execute(
                "SELECT count(*) FROM units WHERE state = ? AND updated_at < ?", args) as cur:
            row = await cur.fetchone()
        async with self._reader.execute(
                "SELECT uci FROM units WHERE state = ? AND updated_at < ? ORDER BY id LIMIT ?",
                (*args, sample)) as cur:
            return (int(row[0]) if row else 0), [hit[0] async for hit in cur]

    async def unlabelled(self, products: list[str]) -> list[tuple[str, str]]:
        """(UCI, product) of units of `products` whose device file verified but that have no
        label yet: a station stopped between the two leaves them so."""
        sql = ("SELECT u.uci, u.product FROM units AS u"
               " WHERE u.product IN (SELECT value FROM json_each(?))"
               " AND u.state NOT IN ('issued', 'written', 'failed', 'voided')"
               " AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.unit_id = u.id"
               " AND e.kind = 'labelled') ORDER BY u.id")
        async with self._reader.execute(sql, (json.dumps(products),)) as cur:
            return [(row[0], row[1]) async for row in cur]
