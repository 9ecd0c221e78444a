"""The journal: every step of every unit as a hash-chained event, durable before it is
acknowledged. `open_journal` is the one place that picks a backend for a location."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from factory.journal.errors import JournalUnavailable
from factory.journal.interface import Journal
from factory.uci import new_ucis as _new_ucis


async def open_journal(location: str | Path, station: str, *,
                       new_ucis: Callable[[int], list[str]] = _new_ucis, create: bool = True,
                       serve: bool = False, inspect: bool = False,
                       anchor: Path | None = None) -> Journal:
    """Open the journal at `location`: a file path is a SQLite journal (checked against its
    anchor), a postgresql:// URL this station's part of a shared PostgreSQL journal.

    `create`: make it if missing (serving and writing; reading never creates). `serve`: this
    process is the station, the only one serving it. `inspect`: open a journal even if it is
    damaged, to look at it (`journal verify`), held so nothing is written. `anchor`: for a
    PostgreSQL journal, the station's local anchor file (a SQLite journal keeps its own
    beside its file); without it a database restored from an old backup is not noticed."""
    scheme = str(location).partition("://")[0] if "://" in str(location) else ""
    if scheme in ("postgresql", "postgres"):
        # `serve` and `inspect` mean nothing here: several stations (and their CLIs) share
        # the database by design, and it has no file to find damaged (see README).
        from factory.journal.postgres import open_postgres

        return await open_postgres(str(location), station, new_ucis, create=create,
                                   anchor=anchor)
    if scheme:
        raise JournalUnavailable(
            f"no journal backend for {scheme}:// (journal = {str(location)!r}); give the "
            "path of a SQLite file or a postgresql:// URL instead")
    # Imported here, not above: importing the journal's plain records (the pure unit
    # pipeline does) should not load a database driver, and a backend's driver is only
    # needed once a journal of that kind is opened.
    from factory.journal.sqlite import open_sqlite

    return await open_sqlite(location, station, new_ucis, create=create, serve=serve,
                             inspect=inspect)
