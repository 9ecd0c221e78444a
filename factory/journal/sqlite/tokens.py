"""API tokens: their hashes, never the tokens."""

from __future__ import annotations

import sqlite3

from factory.journal.errors import TokenExists, TokenNotFound
from factory.journal.plan import utc_now
from factory.journal.records import Role, Token
from factory.journal.sqlite.core import Core


class TokenStore(Core):
    async def add_token(self, name: str, role: Role, token_hash: str) -> None:
        """Store a token's hash (never the token)."""
        try:
            await self._admin("INSERT INTO tokens (name, role, token_hash, created_at)"
                              " VALUES (?, ?, ?, ?)", (name, role, token_hash, utc_now()))
        except sqlite3.IntegrityError as exc:
            raise TokenExists(name) from exc

    async def revoke_token(self, name: str) -> None:
        """Revoke an active token by name."""
        changed = await self._admin(
            "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (utc_now(), name))
        if not changed:
            raise TokenNotFound(name)

    async def active_token_hashes(self) -> list[tuple[str, str, Role]]:
        """(hash, name, role) of every token not revoked."""
        async with self._reader.execute(
                "SELECT token_hash, name, role FROM tokens WHERE revoked_at IS NULL") as cur:
            return [(h, n, r) for h, n, r in await cur.fetchall()]

    async def tokens(self) -> list[Token]:
        async with self._reader.execute(
                "SELECT name, role, created_at, revoked_at FROM tokens ORDER BY id") as cur:
            return [Token(*r) for r in await cur.fetchall()]
