"""What the journal checks when it opens, cheaply enough for every start: SQLite's quick_check
of the file, and the chain's head against the anchor (not the whole chain: `journal verify`
walks that)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from factory.journal.anchor import AnchorFile, Mark, check
from factory.journal.chain import GENESIS
from factory.journal.plan import utc_now


async def quick_check(conn: aiosqlite.Connection, path: Path) -> str:
    """'' if SQLite finds the file sound, else one line: the file, its first complaint, and
    what to do."""
    try:
        rows = list(await conn.execute_fetchall("PRAGMA quick_check(1)"))
        complaint = " ".join(str(rows[0][0]).split()) if rows else "no answer"
    except sqlite3.DatabaseError as exc:
        complaint = " ".join(str(exc).split())
    if complaint == "ok":
        return ""
    return (f"journal {path} is damaged (SQLite: {complaint}); it cannot be trusted to keep "
            "UCIs unique: stop, put back its backup, and run `factory journal verify` to see "
            "how far it is good")


async def chain_head(conn: aiosqlite.Connection) -> Mark:
    """The newest event's seq and hash (seq 0 and the genesis hash for an empty journal)."""
    rows = list(await conn.execute_fetchall(
        "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"))
    if not rows:
        return Mark(0, GENESIS, at=utc_now())
    return Mark(int(rows[0][0]), str(rows[0][1]), at=utc_now())


async def hash_at(conn: aiosqlite.Connection, seq: int) -> str | None:
    """The hash of event `seq` in this journal, None if it has none."""
    if seq == 0:
        return GENESIS
    rows = list(await conn.execute_fetchall("SELECT hash FROM events WHERE seq = ?", (seq,)))
    return str(rows[0][0]) if rows else None


async def check_anchor(conn: aiosqlite.Connection, anchor: AnchorFile,
                       writable: bool) -> tuple[Mark | None, str]:
    """The anchor checked against this file's chain (journal/anchor.py's `check`)."""
    return await check(anchor, await chain_head(conn), lambda seq: hash_at(conn, seq),
                       writable=writable)
