"""This station's hash chain read back: its events in order (export) and its check (verify),
each from one REPEATABLE READ snapshot while the station goes on writing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from factory.journal.chain import ChainWalk
from factory.journal.postgres import rows as r
from factory.journal.postgres.core import Core, connect
from factory.journal.postgres.rows import EVENT_COLUMNS
from factory.journal.records import Event, VerifyResult


class Audit(Core):
    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await connect(self.url, autocommit=True)
        try:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn
        finally:
            await conn.close()

    async def _event_rows(self, conn: psycopg.AsyncConnection[Any],
                          page: int = 5000, after: int = 0) -> AsyncIterator[Any]:
        last = after
        while True:
            rows = await (await conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE station = %s AND seq > %s"
                " ORDER BY seq LIMIT %s", (self.station, last, page))).fetchall()
            if not rows:
                return
            for row in rows:
                yield row
            last = rows[-1][0]

    async def events(self, after: int = 0) -> AsyncIterator[Event]:
        """This station's events after seq `after` in order, from one snapshot, in pages."""
        async with self._snapshot() as conn:
            async for row in self._event_rows(conn, after=after):
                yield r.event(row)

    async def verify(self) -> VerifyResult:
        """Walk this station's chain and name the first event altered or removed."""
        walk = ChainWalk()
        async with self._snapshot() as conn:
            async for row in self._event_rows(conn):
                if not walk.step(*row):
                    break
            # Removing the newest events leaves no gap; the units table still remembers them.
            rows = await (await conn.execute(
                "SELECT max(last_seq) FROM units WHERE last_station = %s",
                (self.station,))).fetchall()
        return walk.result(rows[0][0] or 0)
