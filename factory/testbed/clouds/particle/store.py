"""The simulated Particle cloud's SQLite file: products (numeric id and slug), users with their
access tokens (team members of products, a product's customers, developers), devices (which
product, which owner, protected or not) and claim codes.

Particle knows every device ID its own factory ever made; the simulation cannot, so it takes
any 24-hex-digit ID as a real device. One aiosqlite connection; each check-then-act runs in one
locked transaction.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiosqlite

from factory.testbed.clouds.sqlite_store import SqliteStore

CLAIM_CODE_TTL = 3600  # "valid about an hour"
Role = Literal["member", "customer", "developer"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, slug TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, product_id INTEGER REFERENCES products(id));
CREATE TABLE IF NOT EXISTS memberships (
    user TEXT NOT NULL REFERENCES users(name), product_id INTEGER NOT NULL
    REFERENCES products(id), PRIMARY KEY (user, product_id));
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name));
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, product_id INTEGER REFERENCES products(id), owner TEXT,
    protected INTEGER NOT NULL DEFAULT 0, added_ms INTEGER);
CREATE TABLE IF NOT EXISTS claim_codes (
    code TEXT PRIMARY KEY, user TEXT NOT NULL, product_id INTEGER, expires REAL NOT NULL);
"""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    product_id: int | None  # a customer's product


@dataclass(frozen=True)
class Product:
    id: int
    slug: str


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Store(SqliteStore):
    SCHEMA = _SCHEMA

    @classmethod
    async def open(cls, path: Path) -> Store:
        """The store at `path` (made 0600 if new)."""
        return await cls.connect(path)

    # --- set-up (the CLI and tests) ------------------------------------------------------

    async def add_product(self, product_id: int, slug: str) -> None:
        async with self.transaction() as db:
            await db.execute("INSERT OR IGNORE INTO products VALUES (?, ?)", (product_id, slug))

    async def add_token(self, user: str, role: Role, products: tuple[int, ...] = ()) -> str:
        """A new access token for `user` (made if new): a team member of `products`, or the
        customer of `products[0]`, or a developer outside any product. Shown once."""
        token = secrets.token_hex(20)  # Particle's tokens are 40 hex digits
        async with self.transaction() as db:
            await db.execute("INSERT OR IGNORE INTO users VALUES (?, ?, ?)",
                             (user, role, products[0] if role == "customer" else None))
            if role == "member":
                await db.executemany("INSERT OR IGNORE INTO memberships VALUES (?, ?)",
                                     [(user, p) for p in products])
            await db.execute("INSERT INTO tokens VALUES (?, ?)", (_sha(token), user))
        return token

    async def put_device(self, device_id: str, *, product_id: int | None = None,
                         owner: str | None = None, protected: bool = False) -> None:
        """Place a device as the rest of the world left it (tests: another product, owner)."""
        async with self.transaction() as db:
            await db.execute("INSERT INTO devices VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
                             "SET product_id = excluded.product_id, owner = excluded.owner, "
                             "protected = excluded.protected",
                             (device_id.lower(), product_id, owner, int(protected),
                              int(time.time() * 1000)))

    # --- what the handlers ask ------------------------------------------------------------

    async def user_of(self, token: str) -> User | None:
        row = await self.one("SELECT users.* FROM tokens JOIN users ON users.name = tokens.user"
                             " WHERE tokens.hash = ?", _sha(token))
        return None if row is None else User(row["name"], row["role"], row["product_id"])

    async def product(self, id_or_slug: str) -> Product | None:
        row = await self.one("SELECT * FROM products WHERE slug = ? OR CAST(id AS TEXT) = ?",
                             id_or_slug, id_or_slug)
        return None if row is None else Product(row["id"], row["slug"])

    async def is_member(self, user: str, product_id: int) -> bool:
        return await self.one("SELECT 1 FROM memberships WHERE user = ? AND product_id = ?",
                              user, product_id) is not None

    async def device(self, device_id: str) -> aiosqlite.Row | None:
        return await self.one("SELECT * FROM devices WHERE id = ?", device_id.lower())

    async def owners_devices(self, user: str, product_id: int | None) -> list[str]:
        async with self._db.execute("SELECT id FROM devices WHERE owner = ? AND product_id IS ? "
                                    "ORDER BY id", (user, product_id)) as cursor:
            return [row["id"] for row in await cursor.fetchall()]

    async def new_claim_code(self, user: str, product_id: int | None) -> str:
        """A single-use code of 63 characters (base64 alphabet, as Particle's), for an hour."""
        code = base64.b64encode(secrets.token_bytes(48)).decode()[:63]
        async with self.transaction() as db:
            await db.execute("INSERT INTO claim_codes VALUES (?, ?, ?, ?)",
                             (code, user, product_id, time.time() + CLAIM_CODE_TTL))
        return code
