"""The simulated ThingsBoard's SQLite file: users (the demo accounts of a fresh ThingsBoard),
API keys, device profiles, devices and their attributes, and the key tokens are signed with.

One aiosqlite connection; every check-then-act step (make a device, claim it) runs under one
lock in one transaction, so two requests cannot both make the same device or claim it twice.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from factory.testbed.clouds.sqlite_store import SqliteStore

TENANT_ID = "a9e7f1c0-5e1b-11ef-9c6b-6b2d1f0e7a01"
CUSTOMER_A = "b3c4d5e6-5e1b-11ef-9c6b-6b2d1f0e7a02"
CUSTOMER_B = "c4d5e6f7-5e1b-11ef-9c6b-6b2d1f0e7a03"
NULL_UUID = "13814000-1dd2-11b2-8080-808080808080"
# As a fresh ThingsBoard with demo data: (email, password, authority, customer, title).
DEMO_USERS = (
    ("tenant@thingsboard.org", "tenant", "TENANT_ADMIN", NULL_UUID, "Tenant"),
    ("customer@thingsboard.org", "customer", "CUSTOMER_USER", CUSTOMER_A, "Customer A"),
    ("customerB@thingsboard.org", "customer", "CUSTOMER_USER", CUSTOMER_B, "Customer B"),
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_sha256 TEXT NOT NULL,
    authority TEXT NOT NULL, customer_id TEXT NOT NULL, first_name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id));
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL,
    profile_id TEXT NOT NULL REFERENCES profiles(id), customer_id TEXT NOT NULL,
    label TEXT, additional_info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attributes (
    device_id TEXT NOT NULL REFERENCES devices(id), scope TEXT NOT NULL, key TEXT NOT NULL,
    value TEXT NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY (device_id, scope, key));
"""


@dataclass(frozen=True)
class User:
    id: str
    email: str
    authority: str  # TENANT_ADMIN or CUSTOMER_USER
    customer_id: str
    first_name: str


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


class Store(SqliteStore):
    SCHEMA = _SCHEMA

    @classmethod
    async def open(cls, path: Path) -> Store:
        """The store at `path` (made 0600, with the demo accounts, if new)."""
        store = await cls.connect(path)
        async with store.transaction() as db:
            for email, password, authority, customer, first in DEMO_USERS:
                await db.execute("INSERT OR IGNORE INTO users VALUES (?, ?, ?, ?, ?, ?)",
                                 (str(uuid.uuid5(uuid.NAMESPACE_URL, email)), email,
                                  _sha(password), authority, customer, first))
            await db.execute("INSERT OR IGNORE INTO meta VALUES ('signing_key', ?)",
                             (secrets.token_hex(32),))
        return store

    async def signing_key(self) -> bytes:
        row = await self.one("SELECT value FROM meta WHERE key = 'signing_key'")
        assert row is not None
        return bytes.fromhex(row["value"])

    async def rotate_signing_key(self) -> None:
        """Every token issued so far stops working (as a server restart with a new key)."""
        async with self.transaction() as db:
            await db.execute("UPDATE meta SET value = ? WHERE key = 'signing_key'",
                             (secrets.token_hex(32),))

    async def check_login(self, email: str, password: str) -> User | None:
        row = await self.one("SELECT * FROM users WHERE email = ? AND password_sha256 = ?",
                             email, _sha(password))
        return None if row is None else _user(row)

    async def user(self, user_id: str) -> User | None:
        row = await self.one("SELECT * FROM users WHERE id = ?", user_id)
        return None if row is None else _user(row)

    async def add_api_key(self, email: str) -> str:
        """A new API key for the user `email`, shown once; only its hash is kept."""
        user = await self.one("SELECT id FROM users WHERE email = ?", email)
        if user is None:
            raise KeyError(email)
        key = "tb_" + secrets.token_urlsafe(32)
        async with self.transaction() as db:
            await db.execute("INSERT INTO api_keys VALUES (?, ?)", (_sha(key), user["id"]))
        return key

    async def api_key_user(self, key: str) -> User | None:
        row = await self.one("SELECT users.* FROM api_keys JOIN users ON users.id = "
                             "api_keys.user_id WHERE api_keys.hash = ?", _sha(key))
        return None if row is None else _user(row)

    async def attributes(self, device_id: str, scope: str | None,
                         keys: list[str] | None) -> list[dict[str, Any]]:
        sql, args = "SELECT key, value, ts, scope FROM attributes WHERE device_id = ?", [device_id]
        if scope is not None:
            sql, args = sql + " AND scope = ?", [*args, scope]
        rows = await self.all(sql + " ORDER BY key", *args)
        return [{"key": r["key"], "value": json.loads(r["value"]), "lastUpdateTs": r["ts"]}
                for r in rows if keys is None or r["key"] in keys]


def _user(row: aiosqlite.Row) -> User:
    return User(row["id"], row["email"], row["authority"], row["customer_id"],
                row["first_name"])
