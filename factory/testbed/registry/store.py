"""The registry's SQLite file: devices, claims, certificates and token hashes.

Every write is one whole transaction run by one function on the writer's own thread, so
check-then-act steps (idempotent registration, claim, issue-or-reuse a certificate) are
atomic, cost one hop off the event loop rather than one per statement, and cannot be left
half done by a request cancelled meanwhile; reads use a second (aiosqlite) connection, which
WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from factory.files import create_private
from factory.testbed.registry.ca import Issued
from factory.testbed.registry.model import CertRow, DeviceRow, Registration, iso
from factory.tokens import new_token, token_hash

TokenKind = Literal["product", "account"]
_T = TypeVar("_T")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, product TEXT NOT NULL, hardware_id TEXT NOT NULL,
    model TEXT NOT NULL, name TEXT NOT NULL, created TEXT NOT NULL,
    claim_secret_hash TEXT, claim_expires TEXT, registered TEXT NOT NULL,
    owner TEXT, claim_how TEXT, claimed_at TEXT);
CREATE TABLE IF NOT EXISTS certificates (
    fingerprint TEXT PRIMARY KEY, device_id TEXT NOT NULL REFERENCES devices(id),
    account TEXT NOT NULL, spki_sha256 TEXT NOT NULL, pem TEXT NOT NULL,
    not_after TEXT NOT NULL, issued_at TEXT NOT NULL, revoked_at TEXT);
CREATE INDEX IF NOT EXISTS certificates_by_key ON certificates(device_id, spki_sha256);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('product', 'account')),
    name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_by_name ON tokens(kind, name);
"""
_DEVICE = ("SELECT id, product, hardware_id, model, name, created, claim_secret_hash, "
           "claim_expires, registered, owner, claim_how, claimed_at FROM devices WHERE id = ?")
_CERT = "SELECT fingerprint, device_id, account, pem, not_after FROM certificates"


@dataclass(frozen=True)
class Certified:
    """What `certify` did: the certificate, or why there is none."""

    outcome: Literal["issued", "existing", "not-registered", "not-claimed", "owned-by-other"]
    cert: CertRow | None = None
    owner: str | None = None


class Store:
    def __init__(self, writer: sqlite3.Connection, reader: aiosqlite.Connection,
                 thread: ThreadPoolExecutor) -> None:
        self._w, self._r, self._thread = writer, reader, thread
        # Tokens are never revoked or changed, so a hit can be remembered; a miss is re-read
        # because `factory registry token` may add one while the server runs.
        self._tokens: dict[str, tuple[TokenKind, str]] = {}

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating, mode 0600) the registry database."""
        # Made 0600 before SQLite sees it; SQLite gives the -wal and -shm files the same mode.
        create_private(path)
        thread = ThreadPoolExecutor(1, thread_name_prefix="registry-writer")
        writer = await asyncio.get_running_loop().run_in_executor(thread, _open_writer, path)
        reader = await aiosqlite.connect(path, isolation_level=None)
        await reader.execute("PRAGMA busy_timeout=5000")
        return cls(writer, reader, thread)

    async def close(self) -> None:
        await self._r.close()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._w.close)
        self._thread.shutdown()

    async def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` in one transaction on the writer's thread (it finishes even if the
        request awaiting it is cancelled)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, _transaction, self._w, work)

    # tokens
    async def add_token(self, kind: TokenKind, name: str, now: str) -> str:
        """Make a token of `kind` for `name`; returns it, keeps only its hash."""
        token = new_token()
        await self._write(lambda w: w.execute("INSERT INTO tokens VALUES (?, ?, ?, ?)",
                                              (token_hash(token), kind, name, now)))
        return token

    async def token(self, token: str) -> tuple[TokenKind, str] | None:
        """(kind, name) of a presented token, or None if unknown."""
        if not token.isascii():  # no token is (a header's stray bytes arrive as surrogates)
            return None
        digest = token_hash(token)
        if digest not in self._tokens:
            row = await _one(self._r, "SELECT kind, name FROM tokens WHERE hash = ?", (digest,))
            if row is None:
                return None
            self._tokens[digest] = (row[0], row[1])
        return self._tokens[digest]

    async def account_exists(self, name: str) -> bool:
        if ("account", name) in self._tokens.values():
            return True
        return await _one(self._r, "SELECT 1 FROM tokens WHERE kind = 'account' AND name = ?",
                          (name,)) is not None

    # devices
    async def register(self, reg: Registration, now: str) -> tuple[bool, DeviceRow]:
        """Insert the unit unless known; (inserted, the stored row). Rows never change
        their registration, so the caller may compare after the transaction."""
        def work(w: sqlite3.Connection) -> tuple[bool, DeviceRow]:
            existing = _device_row(w.execute(_DEVICE, (reg.id,)).fetchone())
            if existing is not None:
                return False, existing
            w.execute(
                "INSERT INTO devices (id, product, hardware_id, model, name, created, "
                "claim_secret_hash, claim_expires, registered) VALUES (?,?,?,?,?,?,?,?,?)",
                (reg.id, reg.product, reg.hardware_id, reg.model, reg.name, reg.created,
                 reg.claim_secret_hash, reg.claim_expires, now))
            return True, DeviceRow(reg, now, None, None, None)

        return await self._write(work)

    async def device(self, uci: str) -> DeviceRow | None:
        return _device_row(await _one(self._r, _DEVICE, (uci,)))

    async def newest_certificate(self, uci: str) -> CertRow | None:
        row = await _one(self._r, f"{_CERT} WHERE device_id = ? AND revoked_at IS NULL "
                                  "ORDER BY issued_at DESC, rowid DESC LIMIT 1", (uci,))
        return None if row is None else CertRow(*row)

    async def claim(self, uci: str, account: str, now: str) -> tuple[str | None, str | None]:
        """Make `account` the owner if the unit has none; (owner, claimed_at) afterwards."""
        def work(w: sqlite3.Connection) -> tuple[str | None, str | None]:
            w.execute("UPDATE devices SET owner = ?, claim_how = 'user', claimed_at = ? "
                      "WHERE id = ? AND owner IS NULL", (account, now, uci))
            row = w.execute("SELECT owner, claimed_at FROM devices WHERE id = ?",
                            (uci,)).fetchone()
            return (None, None) if row is None else (row[0], row[1])

        return await self._write(work)

    async def release(self, uci: str, account: str, now: str) -> bool:
        """Release the unit if `account` owns it, revoking its certificates."""
        def work(w: sqlite3.Connection) -> bool:
            cursor = w.execute("UPDATE devices SET owner = NULL, claim_how = NULL, "
                               "claimed_at = NULL WHERE id = ? AND owner = ?", (uci, account))
            if cursor.rowcount == 0:
                return False
            w.execute("UPDATE certificates SET revoked_at = ? WHERE device_id = ? AND "
                      "revoked_at IS NULL", (now, uci))
            return True

        return await self._write(work)

    async def certify(self, uci: str, spki_sha256: str, sign: Callable[[], Issued], now: str,
                      *, preclaim_for: str | None = None) -> Certified:
        """Find or issue the certificate for this unit, key and owner. With `preclaim_for`,
        an unclaimed unit is first claimed for that account (how = 'pre'). `sign` runs on
        the writer's thread, inside the transaction."""
        def work(w: sqlite3.Connection) -> Certified:
            device = _device_row(w.execute(_DEVICE, (uci,)).fetchone())
            if device is None:
                return Certified("not-registered")
            owner = device.owner
            if preclaim_for is not None:
                if owner is None:
                    owner = preclaim_for
                    w.execute("UPDATE devices SET owner = ?, claim_how = 'pre', "
                              "claimed_at = ? WHERE id = ?", (owner, now, uci))
                elif owner != preclaim_for:
                    return Certified("owned-by-other", owner=owner)
            if owner is None:
                return Certified("not-claimed")
            row = w.execute(f"{_CERT} WHERE device_id = ? AND spki_sha256 = ? AND "
                            "account = ? AND revoked_at IS NULL",
                            (uci, spki_sha256, owner)).fetchone()
            if row is not None:
                return Certified("existing", CertRow(*row), owner)
            issued = sign()
            cert = CertRow(issued.fingerprint, uci, owner, issued.pem, iso(issued.not_after))
            w.execute("INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                      (cert.fingerprint, uci, owner, spki_sha256, cert.pem, cert.not_after,
                       now))
            return Certified("issued", cert, owner)

        return await self._write(work)


def _open_writer(path: Path) -> sqlite3.Connection:
    """The writer connection, made on (and used only by) the writer's thread."""
    writer = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
        writer.execute(f"PRAGMA {pragma}")
    writer.executescript(_SCHEMA)
    return writer


def _transaction(w: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    w.execute("BEGIN IMMEDIATE")
    try:
        result = work(w)
    except BaseException:
        w.execute("ROLLBACK")
        raise
    w.execute("COMMIT")
    return result


async def _one(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    async with conn.execute(sql, params) as cursor:
        return await cursor.fetchone()


def _device_row(row: Any) -> DeviceRow | None:
    if row is None:
        return None
    return DeviceRow(Registration(*row[:8]), *row[8:])
