"""The simulated RainMaker claiming service's SQLite file: users (e-mail, password hash, a
claim quota), their access tokens (only hashes kept), and the nodes claimed per user: one
node id per (user, MAC), as the service promises ("the Claiming Service will always return
the same node_id for the same MAC address for a given user"). A node uses up one unit of
quota the first time a certificate is issued for it; a repeat does not.

One aiosqlite connection; each check-then-act runs in one locked transaction.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path

from factory.testbed.clouds.sqlite_store import SqliteStore

DEFAULT_QUOTA = 5  # the service's default for host-driven claiming (esp-rainmaker #83)
_ALPHABET = string.ascii_letters + string.digits
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password TEXT NOT NULL,
    quota INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    user_id TEXT NOT NULL REFERENCES users(id), mac TEXT NOT NULL, platform TEXT NOT NULL,
    node_id TEXT NOT NULL UNIQUE, certified INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, mac));
"""


@dataclass(frozen=True)
class User:
    id: str
    email: str
    quota: int


@dataclass(frozen=True)
class Tokens:
    """What a login answers: JWT-shaped strings (the CLI reads their payloads)."""

    idtoken: str
    accesstoken: str
    refreshtoken: str


class QuotaExhausted(Exception):
    """The user's quota of claimed nodes is used up."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _password_hash(password: str, salt: bytes) -> str:
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**12, r=8, p=1)
    return salt.hex() + ":" + digest.hex()


def _jwt_part(value: dict[str, object]) -> str:
    # Standard base64 without padding: the RainMaker CLI decodes token payloads with
    # base64.b64decode after re-padding them.
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode() \
        .rstrip("=")


def _token(claims: dict[str, object]) -> str:
    """A JWT-shaped token: its payload readable, its "signature" random (the sim knows its
    tokens by hash; nobody verifies the signature)."""
    return ".".join((_jwt_part({"alg": "none", "typ": "JWT"}), _jwt_part(claims),
                     secrets.token_urlsafe(32)))


class Store(SqliteStore):
    SCHEMA = _SCHEMA

    @classmethod
    async def open(cls, path: Path) -> Store:
        """The store at `path` (made 0600 if new)."""
        return await cls.connect(path)

    # --- set-up (the CLI and tests) ------------------------------------------------------

    async def add_user(self, email: str, password: str, quota: int = DEFAULT_QUOTA) -> User:
        """The user `email` (made if new; its password and quota set as given)."""
        async with self.transaction() as db:
            row = await (await db.execute("SELECT id FROM users WHERE email = ?",
                                          (email,))).fetchone()
            user_id = row["id"] if row else _random_id(36)
            await db.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "password = excluded.password, quota = excluded.quota",
                (user_id, email, _password_hash(password, secrets.token_bytes(16)), quota))
        return User(user_id, email, quota)

    async def login(self, email: str, password: str, ttl: float) -> Tokens | None:
        """New tokens for a right e-mail and password; None otherwise."""
        row = await self.one("SELECT * FROM users WHERE email = ?", email)
        if row is None:
            return None
        salt = bytes.fromhex(row["password"].split(":", 1)[0])
        given = await asyncio.to_thread(_password_hash, password, salt)
        if not secrets.compare_digest(given, row["password"]):
            return None
        return await self.new_tokens(row["id"], ttl)

    async def new_tokens(self, user_id: str, ttl: float) -> Tokens:
        row = await self.one("SELECT * FROM users WHERE id = ?", user_id)
        assert row is not None
        expires = int(time.time() + ttl)
        claims: dict[str, object] = {"custom:user_id": user_id, "email": row["email"],
                                     "exp": expires, "token_use": "access"}
        access = _token(claims)
        id_token = _token({**claims, "token_use": "id"})
        async with self.transaction() as db:
            await db.execute("INSERT INTO tokens VALUES (?, ?, ?)",
                             (_sha(access), user_id, expires))
        return Tokens(id_token, access, secrets.token_urlsafe(48))

    # --- what the handlers ask ------------------------------------------------------------

    async def user_of(self, token: str) -> tuple[User, bool] | None:
        """The token's user and whether the token is still valid; None for no such token."""
        row = await self.one("SELECT users.*, tokens.expires FROM tokens JOIN users ON "
                              "users.id = tokens.user_id WHERE tokens.hash = ?", _sha(token))
        if row is None:
            return None
        return User(row["id"], row["email"], row["quota"]), row["expires"] > time.time()

    async def node_for(self, user: User, mac: str, platform: str) -> str:
        """The user's node id for `mac` (made on its first claim)."""
        async with self.transaction() as db:
            row = await (await db.execute("SELECT node_id FROM nodes WHERE user_id = ? AND "
                                          "mac = ?", (user.id, mac))).fetchone()
            if row is not None:
                return str(row["node_id"])
            node_id = _random_id(22)
            await db.execute("INSERT INTO nodes (user_id, mac, platform, node_id) VALUES "
                             "(?, ?, ?, ?)", (user.id, mac, platform, node_id))
            return node_id

    async def certify(self, user: User, node_id: str) -> bool:
        """Count the node against the user's quota (once); False if it is not the user's
        node (never initiated by them). QuotaExhausted when no quota is left."""
        async with self.transaction() as db:
            row = await (await db.execute("SELECT certified FROM nodes WHERE user_id = ? AND "
                                          "node_id = ?", (user.id, node_id))).fetchone()
            if row is None:
                return False
            if row["certified"]:
                return True
            used = await (await db.execute("SELECT count(*) AS n FROM nodes WHERE user_id = ? "
                                           "AND certified = 1", (user.id,))).fetchone()
            if used is not None and used["n"] >= user.quota:
                raise QuotaExhausted(node_id)
            await db.execute("UPDATE nodes SET certified = 1 WHERE node_id = ?", (node_id,))
            return True

    async def nodes(self, user_id: str) -> dict[str, str]:
        """MAC → node id of the user's nodes (tests)."""
        async with self._db.execute("SELECT mac, node_id FROM nodes WHERE user_id = ?",
                                    (user_id,)) as cursor:
            return {row["mac"]: row["node_id"] for row in await cursor.fetchall()}


def _random_id(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
