"""The PostgreSQL journal: many stations in one database, each with its own hash chain, the
fleet's units (UCIs, live hardware ids) unique across all of them by the database's indexes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from factory.journal.anchor import AnchorFile, check
from factory.journal.errors import JournalUnavailable
from factory.journal.plan import utc_now
from factory.journal.postgres.audit import Audit
from factory.journal.postgres.core import connect, hash_at, head_mark, redact
from factory.journal.postgres.migrations import MIGRATION_LOCK, MIGRATIONS
from factory.journal.postgres.status import StatusReads
from factory.journal.postgres.store import Store
from factory.journal.postgres.units import UnitReads


class PostgresJournal(UnitReads, Store, StatusReads, Audit):
    """One station's journal in a shared PostgreSQL database."""


async def open_postgres(url: str, station: str, new_ucis: Callable[[int], list[str]], *,
                        create: bool = True, anchor: Path | None = None) -> PostgresJournal:
    """Connect, apply pending migrations (`create`, or a reader finds the schema as it is),
    check the station's chain against its local `anchor` file (held if the database went
    back: restored from an old backup), and start the station's writer."""
    reader = await connect(url, autocommit=True)
    anchor_file = None
    try:
        if create:
            await migrate(reader)
        else:
            await reader.execute("SELECT 1 FROM schema_migrations LIMIT 1")
        anchored, hold = None, ""
        if anchor is not None and (anchor_file := _open_anchor(anchor, create)) is not None:
            async def read(sql: str, args: Any = ()) -> list[Any]:
                return await (await reader.execute(sql, args)).fetchall()

            anchored, hold = await check(anchor_file, await head_mark(read, station),
                                         lambda seq: hash_at(read, station, seq),
                                         writable=create)
    except psycopg.Error as exc:
        await reader.close()
        if anchor_file is not None:
            anchor_file.close()
        raise JournalUnavailable(
            f"no journal in {redact(url)} ({str(exc).strip()}): `factory serve` or a command "
            "that writes makes one") from exc
    except BaseException:
        await reader.close()
        if anchor_file is not None:
            anchor_file.close()
        raise
    return PostgresJournal(url, station, reader, new_ucis, anchor=anchor_file,
                           anchored=anchored, hold=hold)


def _open_anchor(path: Path, create: bool) -> AnchorFile | None:
    """The station's anchor file; None for a journal opened read-only that has none yet."""
    try:
        return AnchorFile(path, create=create)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalUnavailable(f"cannot open the journal's anchor {path}: "
                                 f"{exc.strerror}") from exc


async def migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    """Apply the migrations this database has not had, each in its own transaction, under an
    advisory lock so stations starting together apply each once."""
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations"
                           " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {row[0] for row in await (await conn.execute(
            "SELECT name FROM schema_migrations")).fetchall()}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)",
                                       (name, utc_now()))
            except psycopg.Error as exc:
                raise JournalUnavailable(f"migration {name} failed: {exc}") from exc
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
