"""This station's outbox and API tokens (each station drains its own outbox and answers its
own tokens, as it would with a journal of its own)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from psycopg import errors as pg_errors

from factory.journal.errors import TokenExists, TokenNotFound
from factory.journal.plan import utc_now
from factory.journal.postgres.core import Core
from factory.journal.records import OutboxEntry, OutboxRow, OutboxStats, Role, Token


class Store(Core):
    async def outbox_due(self, now: float, limit: int = 100, *, horizon: float | None = None,
                         ids: Sequence[int] = ()) -> list[OutboxEntry]:
        """Pending upstream requests whose time has come, oldest first (as SQLite's)."""
        rows = await self._read(
            "SELECT id, uci, action, payload, attempts, created_at FROM outbox"
            " WHERE station = %s AND state = 'pending'"
            " AND (next_at <= %s OR next_at > %s OR id = ANY(%s)) ORDER BY id LIMIT %s",
            (self.station, now, math.inf if horizon is None else horizon, list(ids), limit))
        return [OutboxEntry(int(i), u, a, json.loads(p), n, c) for i, u, a, p, n, c in rows]

    async def outbox_retry(self, entry: int, attempts: int, next_at: float,
                           error: str) -> None:
        await self._admin("UPDATE outbox SET attempts = %s, next_at = %s, last_error = %s"
                          " WHERE id = %s", (attempts, next_at, error, entry))

    async def outbox_close(self, entry: int, outcome: str) -> None:
        await self._admin("UPDATE outbox SET state = %s WHERE id = %s", (outcome, entry))

    async def outbox_stats(self) -> OutboxStats:
        rows = await self._read("SELECT state, count(*), min(created_at) FROM outbox"
                                " WHERE station = %s GROUP BY state", (self.station,))
        by_state = {state: (int(count), oldest) for state, count, oldest in rows}
        pending, oldest = by_state.get("pending", (0, None))
        return OutboxStats(pending=pending, failed=by_state.get("failed", (0, None))[0],
                           done=by_state.get("done", (0, None))[0], oldest=oldest)

    async def outbox_entries(self, state: str | None = None, uci: str | None = None,
                             limit: int = 100) -> list[OutboxRow]:
        rows = await self._read(
            "SELECT id, uci, action, state, attempts, created_at, next_at, last_error"
            " FROM outbox WHERE station = %s AND (%s::text IS NULL OR state = %s)"
            " AND (%s::text IS NULL OR uci = %s) ORDER BY id LIMIT %s",
            (self.station, state, state, uci, uci, limit))
        return [OutboxRow(int(row[0]), *row[1:]) for row in rows]

    async def add_token(self, name: str, role: Role, token_hash: str) -> None:
        try:
            await self._admin("INSERT INTO tokens (station, name, role, token_hash, created_at)"
                              " VALUES (%s, %s, %s, %s, %s)",
                              (self.station, name, role, token_hash, utc_now()))
        except pg_errors.UniqueViolation as exc:
            raise TokenExists(name) from exc

    async def revoke_token(self, name: str) -> None:
        changed = await self._admin(
            "UPDATE tokens SET revoked_at = %s WHERE station = %s AND name = %s"
            " AND revoked_at IS NULL", (utc_now(), self.station, name))
        if not changed:
            raise TokenNotFound(name)

    async def active_token_hashes(self) -> list[tuple[str, str, Role]]:
        rows = await self._read("SELECT token_hash, name, role FROM tokens"
                                " WHERE station = %s AND revoked_at IS NULL", (self.station,))
        return [(h, n, r) for h, n, r in rows]

    async def tokens(self) -> list[Token]:
        rows = await self._read("SELECT name, role, created_at, revoked_at FROM tokens"
                                " WHERE station = %s ORDER BY id", (self.station,))
        return [Token(*row) for row in rows]
