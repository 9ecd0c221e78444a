"""The outbox as people see it: the backlog's size and age and its entries, one shape for
`factory outbox` and `GET /api/v1/outbox` (and the status page)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from factory import clock
from factory.journal.interface import Journal
from factory.journal.records import OutboxRow


async def backlog(journal: Journal, *, state: str | None = "pending", uci: str | None = None,
                  limit: int = 100, now: datetime | None = None) -> dict[str, Any]:
    """Counts by state, the oldest pending entry's age in seconds (None when unknown: it was
    created "later" than now, the clock has gone back since), and up to `limit` entries."""
    stats = await journal.outbox_stats()
    now = now or clock.now()
    age = None
    if stats.oldest is not None:
        oldest = datetime.fromisoformat(stats.oldest.replace("Z", "+00:00"))
        seconds = round((now - oldest).total_seconds(), 1)
        age = seconds if seconds >= 0 else None
    rows = await journal.outbox_entries(state, uci, limit)
    return {"pending": stats.pending, "failed": stats.failed, "done": stats.done,
            "oldest": stats.oldest, "oldest_age_seconds": age,
            "entries": [entry_json(row) for row in rows]}


def entry_json(row: OutboxRow) -> dict[str, Any]:
    next_at = (datetime.fromtimestamp(row.next_at, UTC).isoformat(timespec="seconds")
               if row.state == "pending" and row.next_at else None)
    return {"id": row.id, "uci": row.uci, "action": row.action, "state": row.state,
            "attempts": row.attempts, "created_at": row.created_at, "next_attempt": next_at,
            "last_error": row.last_error}
