"""The SQLite file each simulated cloud keeps its state in: opened private (0600) in WAL mode
with the cloud's schema, one locked write transaction at a time, and one-row reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Self

import aiosqlite

from factory.files import create_private


class SqliteStore:
    SCHEMA = ""  # each cloud's tables (CREATE TABLE IF NOT EXISTS …)

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db, self._lock = db, asyncio.Lock()

    @classmethod
    async def connect(cls, path: Path) -> Self:
        """The store at `path` (made 0600 if new), its schema in place."""
        await asyncio.to_thread(create_private, path)  # no-op when it exists
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.executescript(cls.SCHEMA)
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One locked write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on error)."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def one(self, sql: str, *args: object) -> aiosqlite.Row | None:
        async with self._db.execute(sql, args) as cursor:
            return await cursor.fetchone()

    async def all(self, sql: str, *args: object) -> list[aiosqlite.Row]:
        async with self._db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())
