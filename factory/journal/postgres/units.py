"""Reads of units and their events. A unit is the fleet's: `unit` finds one whichever station
issued it; the lists (`units`, `labels_owed`, `left_in`, `unlabelled`) are this station's."""

from __future__ import annotations

from typing import Any

from factory.journal.errors import UnitNotFound
from factory.journal.postgres import rows as r
from factory.journal.postgres.core import Core
from factory.journal.postgres.rows import EVENT_COLUMNS, UNIT_COLUMNS
from factory.journal.records import Unit


class UnitReads(Core):
    async def unit(self, uci: str) -> Unit:
        """A unit with all its events (from every station that journaled a step of it)."""
        rows = await self._read(f"SELECT {UNIT_COLUMNS} FROM units WHERE uci = %s", (uci,))
        if not rows:
            raise UnitNotFound(uci)
        events = [r.event(row) for row in await self._read(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE uci = %s ORDER BY id", (uci,))]
        return r.unit(rows[0], events)

    async def many(self, ucis: list[str], kinds: tuple[str, ...],
                   page: int = 5000) -> dict[str, Unit]:
        """The units named (those that exist), each with its events of `kinds` only."""
        found: dict[str, Unit] = {}
        for start in range(0, len(ucis), page):
            names = ucis[start:start + page]
            for row in await self._read(
                    f"SELECT {UNIT_COLUMNS} FROM units WHERE uci = ANY(%s)", (names,)):
                found[row[0]] = r.unit(row, [])
            for row in await self._read(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE uci = ANY(%s)"
                    " AND kind = ANY(%s) ORDER BY id", (names, list(kinds))):
                event = r.event(row)
                found[event.uci].events.append(event)
        return found

    async def units(self, *, state: str | None = None, product: str | None = None,
                    limit: int = 100, before: int | None = None) -> tuple[list[Unit], int | None]:
        """This station's units newest first; the page and the cursor for the next one."""
        clauses = ["station = %s"]
        args: list[Any] = [self.station]
        for column, value in (("state", state), ("product", product)):
            if value is not None:
                clauses.append(f"{column} = %s")
                args.append(value)
        if before is not None:
            clauses.append("id < %s")
            args.append(before)
        rows = await self._read(
            f"SELECT id, {UNIT_COLUMNS} FROM units WHERE {' AND '.join(clauses)}"
            " ORDER BY id DESC LIMIT %s", (*args, limit + 1))
        page = [r.unit(row[1:]) for row in rows[:limit]]
        return page, (rows[limit - 1][0] if len(rows) > limit else None)

    async def live_units_for_hardware(self, hardware_id: str) -> list[Unit]:
        """Units not voided that carry this hardware id, in any product, at any station."""
        rows = await self._read(
            f"SELECT {UNIT_COLUMNS} FROM units WHERE hardware_id = %s AND state <> 'voided'",
            (hardware_id,))
        return [r.unit(row) for row in rows]

    async def labels_owed(self, limit: int = 200) -> list[str]:
        rows = await self._read("SELECT uci FROM labels_owed WHERE station = %s"
                                " ORDER BY seq LIMIT %s", (self.station, limit))
        return [row[0] for row in rows]

    async def left_in(self, state: str, before: str, sample: int = 3) -> tuple[int, list[str]]:
        args = (self.station, state, before)
        count = await self._read("SELECT count(*) FROM units WHERE station = %s AND state = %s"
                                 " AND updated_at < %s", args)
        oldest = await self._read("SELECT uci FROM units WHERE station = %s AND state = %s"
                                  " AND updated_at < %s ORDER BY id LIMIT %s", (*args, sample))
        return int(count[0][0]), [row[0] for row in oldest]

    async def unlabelled(self, products: list[str]) -> list[tuple[str, str]]:
        rows = await self._read(
            "SELECT u.uci, u.product FROM units AS u WHERE u.station = %s"
            " AND u.product = ANY(%s)"
            " AND u.state NOT IN ('issued', 'written', 'failed', 'voided')"
            " AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.uci = u.uci"
            " AND e.kind = 'labelled') ORDER BY u.id", (self.station, products))
        return [(row[0], row[1]) for row in rows]
