"""The outbox's reads and bookkeeping (its entries are written with their steps)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from factory.journal.records import OutboxEntry, OutboxRow, OutboxStats
from factory.journal.sqlite.core import Core


class OutboxStore(Core):
    async def outbox_due(self, now: float, limit: int = 100, *, horizon: float | None = None,
                         ids: Sequence[int] = ()) -> list[OutboxEntry]:
        """Pending upstream requests whose time has come, oldest first: due at `now`, due
        after `horizon` (further off than any backoff sets: the clock went back since), or
        one of `ids` (due by the caller's monotonic clock)."""
        rows = await self._reader.execute_fetchall(
            "SELECT id, uci, action, payload, attempts, created_at FROM outbox"
            " WHERE state = 'pending' AND (next_at <= ? OR next_at > ?"
            "  OR id IN (SELECT value FROM json_each(?))) ORDER BY id LIMIT ?",
            (now, math.inf if horizon is None else horizon, json.dumps(list(ids)), limit))
        return [OutboxEntry(i, u, a, json.loads(p), n, c) for i, u, a, p, n, c in rows]

    async def outbox_retry(self, entry: int, attempts: int, next_at: float,
                           error: str) -> None:
        """Try this entry again at `next_at` (unix time)."""
        await self._admin("UPDATE outbox SET attempts = ?, next_at = ?, last_error = ?"
                          " WHERE id = ?", (attempts, next_at, error, entry))

    async def outbox_close(self, entry: int, outcome: str) -> None:
        """Close an entry without an event (its unit can take no more steps)."""
        await self._admin("UPDATE outbox SET state = ? WHERE id = ?", (outcome, entry))

    async def outbox_stats(self) -> OutboxStats:
        """The backlog: pending and failed entries and the oldest pending one's creation."""
        rows = await self._reader.execute_fetchall(
            "SELECT state, count(*), min(created_at) FROM outbox GROUP BY state")
        by_state = {state: (count, oldest) for state, count, oldest in rows}
        pending, oldest = by_state.get("pending", (0, None))
        return OutboxStats(pending=pending, failed=by_state.get("failed", (0, None))[0],
                           done=by_state.get("done", (0, None))[0], oldest=oldest)

    async def outbox_entries(self, state: str | None = None, uci: str | None = None,
                             limit: int = 100) -> list[OutboxRow]:
        """Outbox entries, oldest first, optionally of one state and one unit."""
        rows = await self._reader.execute_fetchall(
            "SELECT id, uci, action, state, attempts, created_at, next_at, last_error"
            " FROM outbox WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR uci = ?2)"
            " ORDER BY id LIMIT ?3", (state, uci, limit))
        return [OutboxRow(*row) for row in rows]
