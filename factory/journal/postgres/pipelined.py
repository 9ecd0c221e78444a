"""One transaction in one round trip: psycopg's pipeline mode with COMMIT queued behind the
statements and fetched at the pipeline's one Sync.

Not `conn.pipeline()` around `conn.transaction()`: the transaction syncs at each of its nested
pipeline levels (three round trips), and an error raised inside the pipeline block makes
psycopg log "error ignored terminating pipeline" for the statements it skipped after it, on
every collision or lost connection. Here the error is kept, not raised, in the block, and
raised once the transaction is rolled back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")


async def in_one_sync(conn: psycopg.AsyncConnection[Any],
                      work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()` (its statements) in one transaction on `conn` and commit it; whatever it
    or the server raised is raised after the rollback (the connection closed if that fails)."""
    failure: Exception | None = None
    try:
        async with conn.pipeline():
            try:
                if conn.autocommit:
                    await conn.execute("BEGIN")
                result = await work()
                await conn.execute("COMMIT")
            except Exception as exc:
                failure = exc
    except psycopg.Error as exc:  # what the Sync brought back
        failure = failure or exc
    if failure is None:
        return result
    if not conn.broken:
        try:
            await conn.rollback()
        except psycopg.Error:  # the connection is unusable: its owner opens another
            await conn.close()
    raise failure
