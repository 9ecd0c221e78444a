"""The hash chain read back: every event in order (export) and its check (verify)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite

from factory.journal.chain import ChainWalk
from factory.journal.records import Event, VerifyResult
from factory.journal.sqlite import rows as r
from factory.journal.sqlite.connection import connect
from factory.journal.sqlite.core import Core
from factory.journal.sqlite.rows import EVENT_COLUMNS


class Audit(Core):
    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """A connection of its own holding one read transaction: a consistent view of the
        whole journal while the station goes on writing (and the shared reader stays live)."""
        conn = await connect(self.path)
        try:
            await conn.execute("BEGIN")
            yield conn
        finally:
            await conn.close()  # ends the read transaction

    @staticmethod
    async def _event_rows(conn: aiosqlite.Connection, page: int = 5000,
                          after: int = 0) -> AsyncIterator[Any]:
        last = after
        while True:
            rows = list(await conn.execute_fetchall(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (last, page)))
            if not rows:
                return
            for row in rows:
                yield row
            last = rows[-1][0]

    async def events(self, after: int = 0) -> AsyncIterator[Event]:
        """Every event after seq `after` in order, from one snapshot, read in pages so memory
        stays flat."""
        async with self._snapshot() as conn:
            async for row in self._event_rows(conn, after=after):
                yield r.event(row)

    async def verify(self) -> VerifyResult:
        """Walk the hash chain and name the first event that was altered or removed."""
        walk = ChainWalk()
        async with self._snapshot() as conn:
            async for row in self._event_rows(conn):
                if not walk.step(*row):
                    break
            # Removing the newest events leaves no gap; the units table still remembers them.
            rows = list(await conn.execute_fetchall("SELECT max(last_seq) FROM units"))
        return walk.result(rows[0][0] or 0)
