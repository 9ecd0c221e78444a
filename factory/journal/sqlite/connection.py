"""Opening the SQLite journal: durable settings on every connection, migrations once."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import aiosqlite

from factory.journal.errors import JournalUnavailable
from factory.journal.plan import utc_now
from factory.journal.sqlite.migrations import MIGRATIONS
from factory.journal.sqlite.writer import write_failure

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000")
# UCIs are random, so every insert lands at a random place of the UCI index: keep the index
# in memory (64 MiB holds it for about two million units), or batches slow down as the
# journal grows (measured: 10,000-UCI batches at 200,000 units took 2x as long with the
# default 2 MiB).
WRITER_CACHE = "PRAGMA cache_size=-65536"


async def connect(path: Path, isolation_level: str | None = None) -> aiosqlite.Connection:
    """A connection with the journal's pragmas; JournalUnavailable if the file won't open."""
    try:
        conn = await aiosqlite.connect(path, isolation_level=isolation_level)
    except sqlite3.Error as exc:
        raise JournalUnavailable(cannot_open(path, exc)) from exc
    try:
        for pragma in PRAGMAS:
            await conn.execute(pragma)
    except BaseException as exc:
        # Closed on every failure: aiosqlite's thread would otherwise keep the process alive.
        await conn.close()
        if isinstance(exc, sqlite3.Error):
            raise JournalUnavailable(cannot_open(path, exc)) from exc
        raise
    return conn


def cannot_open(path: Path, exc: sqlite3.Error | OSError) -> str:
    """One line for a journal SQLite cannot open: the file, what is wrong, what to do."""
    if path.is_dir():
        return f"cannot open journal {path}: it is a directory; set [station] journal to a file"
    what = exc.strerror if isinstance(exc, OSError) and exc.strerror else write_failure(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
            getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_NOTADB,
                                                       sqlite3.SQLITE_CORRUPT)):
        return (f"cannot open journal {path}: {what}; it is damaged or not a journal: "
                "restore it from the backup, or set [station] journal to the right file")
    return f"cannot open journal {path}: {what}"


async def migrate(conn: aiosqlite.Connection) -> None:
    """Apply the migrations this journal has not had yet, each in its own transaction."""
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations"
                       " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, sql in MIGRATIONS:
        async with conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)) as cur:
            if await cur.fetchone():
                continue
        try:
            # executescript commits first, so the whole migration is one script.
            await conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql};\nINSERT INTO schema_migrations VALUES "
                f"('{name}', '{utc_now()}');\nCOMMIT;")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            async with conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE name = ?", (name,)) as cur:
                if await cur.fetchone():
                    continue  # another process applied it meanwhile
            raise JournalUnavailable(f"migration {name} failed: {exc}") from exc
