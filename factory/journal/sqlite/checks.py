"""What the journal checks when it opens, cheaply enough for every start: SQLite's quick_check
of the file, and the chain's head against the anchor (not the whole chain: `journal verify`
walks that)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite

from factory.journal.chain import GENESIS
from factory.journal.plan import utc_now
from factory.journal.sqlite.anchor import AnchorFile, Mark

ACCEPT = ("the station refuses to issue until a person acts: put back the journal's backup "
          "if there is one, or run `factory journal accept-loss` to accept it and go on")


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
    """The anchor checked against the chain: (the mark both agree on, '') or (None, why the
    journal must hold). A journal with no anchor yet starts one (`writable`)."""
    reading = await asyncio.to_thread(anchor.read)
    head = await chain_head(conn)
    mark = reading.mark
    if mark is None:
        if not reading.empty:
            return None, (f"the anchor {anchor.path} is unreadable (both copies damaged), so "
                          f"the journal's completeness cannot be checked; {ACCEPT}")
        if writable:
            mark = await asyncio.to_thread(anchor.advance, head, None)
        return mark, ""
    if mark.seq > head.seq:
        return None, (f"events {head.seq + 1}..{mark.seq} are missing (the anchor, written "
                      f"{mark.at}, says the journal reached event {mark.seq}); {ACCEPT}")
    if await hash_at(conn, mark.seq) != mark.hash:
        return None, (f"event {mark.seq} is not the one the anchor (written {mark.at}) "
                      "recorded: the journal was replaced or rewritten since; " + ACCEPT)
    if writable and mark.seq < head.seq:  # the newest commit's anchor write was cut short
        mark = await asyncio.to_thread(anchor.advance, head, mark)
    return mark, ""
