"""The SQLite journal: one file in WAL mode, one writer connection, readers beside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from factory.files import create_private
from factory.journal.errors import JournalUnavailable
from factory.journal.sqlite.audit import Audit
from factory.journal.sqlite.connection import WRITER_CACHE, connect, migrate
from factory.journal.sqlite.outbox import OutboxStore
from factory.journal.sqlite.status import StatusReads
from factory.journal.sqlite.tokens import TokenStore
from factory.journal.sqlite.units import UnitReads


class SQLiteJournal(UnitReads, OutboxStore, TokenStore, StatusReads, Audit):
    """Append-only event journal with derived unit state, in one SQLite file."""


async def open_sqlite(path: str | Path, station: str,
                      new_ucis: Callable[[int], list[str]]) -> SQLiteJournal:
    """Open (creating if needed) the journal file and apply pending migrations."""
    path = Path(path)
    try:
        create_private(path)
    except OSError as exc:
        raise JournalUnavailable(f"cannot create journal {path}: {exc.strerror}") from exc
    # IMMEDIATE: the first INSERT of a batch takes the write lock (no BEGIN round trip).
    writer = await connect(path, "IMMEDIATE")
    try:
        await writer.execute(WRITER_CACHE)
        await migrate(writer)
        reader = await connect(path)
    except BaseException:
        await writer.close()
        raise
    return SQLiteJournal(path, station, writer, reader, new_ucis)
