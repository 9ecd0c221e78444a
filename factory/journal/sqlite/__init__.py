"""The SQLite journal: one file in WAL mode, one writer connection, readers beside it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from factory.files import create_private
from factory.journal.anchor import AnchorFile, anchor_path
from factory.journal.errors import JournalUnavailable
from factory.journal.sqlite.audit import Audit
from factory.journal.sqlite.checks import check_anchor, quick_check
from factory.journal.sqlite.connection import WRITER_CACHE, cannot_open, connect, migrate
from factory.journal.sqlite.lock import hold_serve_lock
from factory.journal.sqlite.outbox import OutboxStore
from factory.journal.sqlite.status import StatusReads
from factory.journal.sqlite.tokens import TokenStore
from factory.journal.sqlite.units import UnitReads


class SQLiteJournal(UnitReads, OutboxStore, TokenStore, StatusReads, Audit):
    """Append-only event journal with derived unit state, in one SQLite file."""


async def open_sqlite(path: str | Path, station: str, new_ucis: Callable[[int], list[str]],
                      *, create: bool = True, serve: bool = False,
                      inspect: bool = False) -> SQLiteJournal:
    """Open the journal file (creating it only if `create`), apply pending migrations and
    check it: a file SQLite finds damaged is refused (kept open, as a hold, when `inspect`), a
    journal behind or beside its anchor is held. `serve` takes the one-station lock."""
    path = Path(path)
    if not create and not path.exists():
        raise JournalUnavailable(
            f"no journal at {path} (the station config's [station] journal): check the path; "
            "`factory serve` or a command that writes makes a new one")
    try:
        create_private(path)
    except OSError as exc:
        raise JournalUnavailable(cannot_open(path, exc)) from exc
    if path.is_dir():
        raise JournalUnavailable(cannot_open(path, IsADirectoryError(21, "is a directory")))
    with contextlib.ExitStack() as files:
        serve_lock = hold_serve_lock(path) if serve else None
        if serve_lock is not None:
            files.callback(os.close, serve_lock)
        # IMMEDIATE: the first INSERT of a batch takes the write lock (no BEGIN round trip).
        writer = await connect(path, "IMMEDIATE")
        reader = None
        try:
            damage = await quick_check(writer, path)
            if damage and not inspect:
                raise JournalUnavailable(damage)
            await writer.execute(WRITER_CACHE)
            await migrate(writer)
            reader = await connect(path)
            anchor = _open_anchor(path, create)
            if anchor is not None:
                files.callback(anchor.close)
                anchored, hold = await check_anchor(writer, anchor, writable=create)
            else:
                anchored, hold = None, ""
        except BaseException:
            if reader is not None:
                await reader.close()
            await writer.close()
            raise
        hold = damage or hold
        files.pop_all()
    return SQLiteJournal(path, station, writer, reader, new_ucis, anchor=anchor,
                         anchored=anchored, hold=hold, serve_lock=serve_lock)


def _open_anchor(path: Path, create: bool) -> AnchorFile | None:
    """The journal's anchor file; None for a journal opened read-only that has none yet."""
    try:
        return AnchorFile(anchor_path(path), create=create)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalUnavailable(f"cannot open the journal's anchor {anchor_path(path)}: "
                                 f"{exc.strerror}") from exc
