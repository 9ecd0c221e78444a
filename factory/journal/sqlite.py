"""The SQLite journal: WAL, synchronous=FULL, one writer connection, one reader connection.

All SQL of the station lives under factory/journal/, so another journal (PostgreSQL for a
fleet) can stand in for this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiosqlite

from factory.files import create_private
from factory.journal import activity
from factory.journal.chain import GENESIS, event_hash
from factory.journal.errors import JournalUnavailable, TokenExists, TokenNotFound, UnitNotFound
from factory.journal.migrations import MIGRATIONS
from factory.journal.records import (
    Event,
    IssueRequest,
    IssueResult,
    OutboxEntry,
    OutboxRow,
    OutboxStats,
    Role,
    Token,
    Unit,
    VerifyResult,
)
from factory.journal.writer import (
    MAX_UNITS_PER_BATCH,
    AdminJob,
    BatchWriter,
    IssueJob,
    Job,
    StepJob,
    fail_jobs,
    run_admin,
    utc_now,
)
from factory.uci import new_ucis as _new_ucis

log = logging.getLogger("factory.journal")
_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000")
# UCIs are random, so every insert lands at a random place of the UCI index: keep the index
# in memory (64 MiB holds it for about two million units), or batches slow down as the
# journal grows (measured: 10,000-UCI batches at 200,000 units took 2x as long with the
# default 2 MiB).
_WRITER_CACHE = "PRAGMA cache_size=-65536"
_UNIT_COLUMNS = "uci, product, hardware_id, state, station, created_at, updated_at"
_EVENT_COLUMNS = "seq, uci, kind, at, station, actor, data, hash"  # unit_id is storage only


async def _connect(path: Path, isolation_level: str | None = None) -> aiosqlite.Connection:
    try:
        conn = await aiosqlite.connect(path, isolation_level=isolation_level)
    except sqlite3.Error as exc:
        raise JournalUnavailable(f"cannot open journal {path}: {exc}") from exc
    for pragma in _PRAGMAS:
        await conn.execute(pragma)
    return conn


class Journal:
    """Append-only event journal with derived unit state."""

    def __init__(self, path: Path, station: str, writer: aiosqlite.Connection,
                 reader: aiosqlite.Connection,
                 new_ucis: Callable[[int], list[str]]) -> None:
        self.path, self.station = path, station
        self._writer_conn, self._reader = writer, reader
        self._batches = BatchWriter(writer, station, new_ucis)
        self._pending: deque[Job | AdminJob] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._listeners: list[Callable[[], None]] = []
        self._side: aiosqlite.Connection | None = None  # the status page's reader
        self._side_lock = asyncio.Lock()
        self._task = asyncio.create_task(self._write_loop(), name="journal-writer")

    @classmethod
    async def open(cls, path: str | Path, station: str,
                   new_ucis: Callable[[int], list[str]] = _new_ucis) -> Journal:
        """Open (creating if needed) the journal file and apply pending migrations."""
        path = Path(path)
        try:
            create_private(path)
        except OSError as exc:
            raise JournalUnavailable(f"cannot create journal {path}: {exc.strerror}") from exc
        # IMMEDIATE: the first INSERT of a batch takes the write lock (no BEGIN round trip).
        writer = await _connect(path, "IMMEDIATE")
        try:
            await writer.execute(_WRITER_CACHE)
            await _migrate(writer)
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(path, station, writer, reader, new_ucis)

    @property
    def writing(self) -> bool:
        """Whether the writer task is alive (the station's watchdog asks)."""
        return not self._task.done()

    @property
    def write_failure(self) -> str:
        """Why the newest write failed (disk full, I/O error), or "" if it did not: new work
        is refused until a write succeeds again."""
        return self._batches.failure

    async def close(self) -> None:
        """Finish queued writes, then close both connections."""
        self._closing = True
        self._wakeup.set()
        try:
            await self._task
        finally:
            if self._side is not None:
                await self._side.close()
            await self._reader.close()
            await self._writer_conn.close()

    # -- writes -----------------------------------------------------------------------------

    async def issue(self, request: IssueRequest) -> IssueResult:
        """Issue UCIs; returns once they are durable in the journal."""
        job = IssueJob(request, asyncio.get_running_loop().create_future())
        return await self._submit(job, job.future)

    async def void(self, uci: str, reason: str, actor: str) -> None:
        """Mark a unit voided; its UCI stays taken forever."""
        await self.record(uci, "voided", actor, {"reason": reason}, state="voided")

    async def record(self, uci: str, kind: str, actor: str, data: dict[str, Any],
                     state: str | None = None, *,
                     enqueue: tuple[str, dict[str, Any]] | None = None,
                     settles: tuple[int, str] | None = None) -> None:
        """Journal one step of a unit (durable on return); a voided unit takes no steps.

        `enqueue` (action, payload) puts a request for the upstream in the outbox and
        `settles` (entry, "done" | "failed") closes one, both in the step's transaction.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        job = StepJob(uci=uci, kind=kind, state=state, actor=actor, data=data, future=fut,
                      refuse_from=frozenset({"voided"}), enqueue=enqueue, settles=settles)
        await self._submit(job, fut)

    # -- outbox -----------------------------------------------------------------------------

    async def outbox_due(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        """Pending upstream requests whose time has come, oldest first."""
        rows = await self._reader.execute_fetchall(
            "SELECT id, uci, action, payload, attempts, created_at FROM outbox"
            " WHERE state = 'pending' AND next_at <= ? ORDER BY id LIMIT ?", (now, limit))
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

    async def note(self, kind: str, actor: str, data: dict[str, Any]) -> None:
        """Journal an event of the station itself (no unit), e.g. a fixture's failure before
        the unit had a UCI."""
        await self.record("", kind, actor, data)

    async def live_units_for_hardware(self, hardware_id: str) -> list[Unit]:
        """Units not voided that carry this hardware id, in any product."""
        rows = await self._reader.execute_fetchall(
            f"SELECT {_UNIT_COLUMNS} FROM units WHERE hardware_id = ? AND state <> 'voided'",
            (hardware_id,))
        return [_unit(r) for r in rows]

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` (cheap, synchronous) after writes are committed; returns the
        function that stops it. Writes of other processes (the CLI) are not seen."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not stop the writer
                log.exception("journal change listener failed")

    @property
    def commits(self) -> int:
        """Transactions written; group commit keeps this far below the requests served."""
        return self._batches.commits

    async def _submit(self, job: Job | AdminJob, fut: asyncio.Future[Any]) -> Any:
        if self._closing:
            raise JournalUnavailable("the journal is closing; try again after restart")
        self._pending.append(job)
        self._wakeup.set()
        # A caller cancelled now (its client hung up) does not stop the write: the job is
        # queued and goes to disk with its batch, so nothing half-done is left behind.
        return await fut

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                head = self._pending.popleft()
                if isinstance(head, AdminJob):
                    await run_admin(self._writer_conn, head)
                    continue
                batch: list[Job] = [head]
                size = head.size
                while self._pending:
                    job = self._pending[0]
                    if isinstance(job, AdminJob) or size + job.size > MAX_UNITS_PER_BATCH:
                        break
                    self._pending.popleft()
                    batch.append(job)
                    size += job.size
                try:
                    await self._batches.write(batch)
                except Exception as exc:  # the writer must outlive any one batch
                    log.exception("journal writer failed a batch")
                    fail_jobs(batch, JournalUnavailable(f"journal write failed: {exc}"))
            self._changed()  # once per round: a burst of writes is one notification
            if self._closing:
                return

    # -- reads ------------------------------------------------------------------------------

    async def unit(self, uci: str) -> Unit:
        """A unit with all its events."""
        rows = list(await self._reader.execute_fetchall(
            f"SELECT id, {_UNIT_COLUMNS} FROM units WHERE uci = ?", (uci,)))
        if not rows:
            raise UnitNotFound(uci)
        events = [_event(r) for r in await self._reader.execute_fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE unit_id = ? AND uci = ? ORDER BY seq",
            (rows[0][0], uci))]
        return _unit(rows[0][1:], events)

    async def many(self, ucis: list[str], kinds: tuple[str, ...],
                   page: int = 5000) -> dict[str, Unit]:
        """The units named (those that exist), each with its events of `kinds` only: one
        query per page of UCIs rather than one per unit (batch runs over thousands)."""
        found: dict[str, Unit] = {}
        for start in range(0, len(ucis), page):
            names = json.dumps(ucis[start:start + page])
            for row in await self._reader.execute_fetchall(
                    f"SELECT {_UNIT_COLUMNS} FROM units WHERE uci IN"
                    " (SELECT value FROM json_each(?))", (names,)):
                unit = _unit(row, [])
                found[unit.uci] = unit
            columns = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))
            for row in await self._reader.execute_fetchall(
                    f"SELECT {columns} FROM units AS u JOIN events AS e ON e.unit_id = u.id"
                    " WHERE u.uci IN (SELECT value FROM json_each(?)) AND e.kind IN"
                    " (SELECT value FROM json_each(?)) ORDER BY e.seq",
                    (names, json.dumps(kinds))):
                event = _event(row)
                found[event.uci].events.append(event)
        return found

    async def units(self, *, state: str | None = None, product: str | None = None,
                    limit: int = 100, before: int | None = None) -> tuple[list[Unit], int | None]:
        """Units newest first; returns the page and the cursor for the next one (or None)."""
        clauses: list[str] = ["1"]
        args: list[str | int] = []
        for column, value in (("state", state), ("product", product)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            clauses.append("id < ?")
            args.append(before)
        sql = (f"SELECT id, {_UNIT_COLUMNS} FROM units WHERE {' AND '.join(clauses)}"
               " ORDER BY id DESC LIMIT ?")
        async with self._reader.execute(sql, (*args, limit + 1)) as cur:
            rows = list(await cur.fetchall())
        page = [_unit(r[1:]) for r in rows[:limit]]
        return page, (rows[limit - 1][0] if len(rows) > limit else None)

    async def labels_owed(self, limit: int = 200) -> list[str]:
        """UCIs whose newest label the printer still owes, oldest first."""
        async with self._reader.execute(
                "SELECT uci FROM labels_owed ORDER BY seq LIMIT ?", (limit,)) as cur:
            return [row[0] async for row in cur]

    async def left_in(self, state: str, before: str, sample: int = 3) -> tuple[int, list[str]]:
        """How many units have been in `state` since before `before` (a journal time), and
        the oldest few of them."""
        args = (state, before)
        async with self._reader.execute(
                "SELECT count(*) FROM units WHERE state = ? AND updated_at < ?", args) as cur:
            row = await cur.fetchone()
        async with self._reader.execute(
                "SELECT uci FROM units WHERE state = ? AND updated_at < ? ORDER BY id LIMIT ?",
                (*args, sample)) as cur:
            return (int(row[0]) if row else 0), [r[0] async for r in cur]

    async def unlabelled(self, products: list[str]) -> list[tuple[str, str]]:
        """(UCI, product) of units of `products` whose device file verified but that have no
        label yet: a station stopped between the two leaves them so."""
        sql = ("SELECT u.uci, u.product FROM units AS u"
               " WHERE u.product IN (SELECT value FROM json_each(?))"
               " AND u.state NOT IN ('issued', 'written', 'failed', 'voided')"
               " AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.unit_id = u.id"
               " AND e.kind = 'labelled') ORDER BY u.id")
        async with self._reader.execute(sql, (json.dumps(products),)) as cur:
            return [(row[0], row[1]) async for row in cur]

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """A connection of its own holding one read transaction: a consistent view of the
        whole journal while the station goes on writing (and the shared reader stays live)."""
        conn = await _connect(self.path)
        try:
            await conn.execute("BEGIN")
            yield conn
        finally:
            await conn.close()  # ends the read transaction

    @staticmethod
    async def _event_rows(conn: aiosqlite.Connection, page: int = 5000) -> AsyncIterator[Any]:
        last = 0
        while True:
            rows = list(await conn.execute_fetchall(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (last, page)))
            if not rows:
                return
            for row in rows:
                yield row
            last = rows[-1][0]

    async def events(self) -> AsyncIterator[Event]:
        """Every event in order, from one snapshot, read in pages so memory stays flat."""
        async with self._snapshot() as conn:
            async for row in self._event_rows(conn):
                yield _event(row)

    async def verify(self) -> VerifyResult:
        """Walk the hash chain and name the first event that was altered or removed."""
        expected_prev, expected_seq, checked = GENESIS, 1, 0
        async with self._snapshot() as conn:
            async for seq, uci, kind, at, station, actor, data, stored in self._event_rows(conn):
                if seq != expected_seq:
                    return VerifyResult(False, checked, expected_seq,
                                        f"event {expected_seq} is missing (removed)")
                if event_hash(expected_prev, seq, uci, kind, at, station, actor,
                              data) != stored:
                    return VerifyResult(False, checked, seq,
                                        f"event {seq} was altered (its content does not match "
                                        "its hash and the chain before it)")
                expected_prev, expected_seq, checked = stored, seq + 1, checked + 1
            # Removing the newest events leaves no gap; the units table still remembers them.
            rows = list(await conn.execute_fetchall("SELECT max(last_seq) FROM units"))
        newest = rows[0][0] or 0
        if newest >= expected_seq:
            return VerifyResult(False, checked, expected_seq,
                                f"events {expected_seq}..{newest} are missing (removed)")
        return VerifyResult(True, checked)

    # -- tokens -----------------------------------------------------------------------------

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

    async def _admin(self, sql: str, args: tuple[Any, ...]) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        return int(await self._submit(AdminJob(sql, args, fut), fut))

    async def active_token_hashes(self) -> list[tuple[str, str, Role]]:
        """(hash, name, role) of every token not revoked."""
        async with self._reader.execute(
                "SELECT token_hash, name, role FROM tokens WHERE revoked_at IS NULL") as cur:
            return [(h, n, r) for h, n, r in await cur.fetchall()]

    async def tokens(self) -> list[Token]:
        async with self._reader.execute(
                "SELECT name, role, created_at, revoked_at FROM tokens ORDER BY id") as cur:
            return [Token(*r) for r in await cur.fetchall()]

    async def ping(self) -> None:
        """Raise JournalUnavailable unless the journal answers a query."""
        try:
            await self._reader.execute_fetchall("SELECT 1 FROM schema_migrations LIMIT 1")
        except sqlite3.Error as exc:
            raise JournalUnavailable(f"journal {self.path} does not answer: {exc}") from exc

    async def count_events(self, counters: Mapping[str, str],
                           since: Mapping[str, str]) -> dict[str, dict[str, int]]:
        """Units with events of the mapped kinds per counter and time window (activity.py)."""
        return await activity.count_events(await self._side_reader(), counters, since)

    async def _side_reader(self) -> aiosqlite.Connection:
        """A reader of its own for the status page's counts (a day of events), so the
        station's quick reads (tokens, units) never queue behind them."""
        async with self._side_lock:
            if self._side is None:
                self._side = await _connect(self.path)
            return self._side

    async def recent_units(self, limit: int = 20) -> list[Unit]:
        """The units with the newest events, newest first, each with all its events."""
        ids = await activity.recent_unit_ids(self._reader, limit)
        if not ids:
            return []
        key = json.dumps(ids)
        rows = await self._reader.execute_fetchall(
            f"SELECT id, {_UNIT_COLUMNS} FROM units WHERE id IN (SELECT value FROM json_each(?))",
            (key,))
        events: dict[int, list[Event]] = {i: [] for i in ids}
        for row in await self._reader.execute_fetchall(
                f"SELECT unit_id, {_EVENT_COLUMNS} FROM events"
                " WHERE unit_id IN (SELECT value FROM json_each(?)) ORDER BY seq", (key,)):
            events[row[0]].append(_event(row[1:]))
        by_id = {row[0]: _unit(row[1:], events[row[0]]) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def stats(self) -> dict[str, int]:
        """Unit counts by state."""
        async with self._reader.execute(
                "SELECT state, count(*) FROM units GROUP BY state") as cur:
            return {state: n for state, n in await cur.fetchall()}


def _unit(row: Any, events: list[Event] | None = None) -> Unit:
    uci, product, hardware_id, state, station, created_at, updated_at = row
    return Unit(uci=uci, product=product, hardware_id=hardware_id, state=state,
                station=station, created_at=created_at, updated_at=updated_at,
                events=events or [])


def _event(row: Any) -> Event:
    seq, uci, kind, at, station, actor, data, digest = row
    return Event(seq=seq, uci=uci, kind=kind, at=at, station=station, actor=actor,
                 data=json.loads(data), hash=digest)


async def _migrate(conn: aiosqlite.Connection) -> None:
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations"
                       " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, sql in MIGRATIONS:
        async with conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)) as cur:
            if await cur.fetchone():
                continue
        try:
            # executescript commits first, so the whole migration is one script.
            await conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql};\nINSERT INTO schema_migrations VALUES "
                f"('{name}', '{utc_now()}');\nCOMMIT;")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            async with conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE name = ?", (name,)) as cur:
                if await cur.fetchone():
                    continue  # another process applied it meanwhile
            raise JournalUnavailable(f"migration {name} failed: {exc}") from exc
