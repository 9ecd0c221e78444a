"""Group commit: everything queued while the last transaction was on disk goes in the next one.

One writer connection, one transaction per batch, a handful of statements per batch whatever
its size: aiosqlite hops to its thread for every call (and each hop waits for a busy event
loop), so rows are grouped, never awaited one by one. A job's future resolves only after
COMMIT returned, i.e. after the WAL was synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from factory import clock, failpoints
from factory.journal.chain import GENESIS, canonical_data, event_hash
from factory.journal.errors import (
    AlreadyVoided,
    IdempotencyConflict,
    JournalError,
    JournalUnavailable,
    OutboxSettled,
    UnitNotFound,
)
from factory.journal.interface import OutboxRequest
from factory.journal.records import IssueRequest, IssueResult

log = logging.getLogger("factory.journal")

MAX_UNITS_PER_BATCH = 20_000
COLLISION_RETRIES = 5


def utc_now() -> str:
    """Journal time: UTC, milliseconds, ISO 8601 (from `factory.clock.now`, which tests step)."""
    return clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class IssueJob:
    request: IssueRequest
    future: asyncio.Future[IssueResult]

    @property
    def size(self) -> int:
        return self.request.count


@dataclass
class StepJob:
    """Record a step of an existing unit (written, verified, failed, voided, …); with no
    UCI, an event of the station itself. `state` None keeps the unit's state."""

    uci: str
    kind: str
    state: str | None
    actor: str
    data: dict[str, Any]
    future: asyncio.Future[None]
    refuse_from: frozenset[str] = frozenset()
    size: int = 1
    enqueue: OutboxRequest | None = None  # a request for the upstream, queued with the step
    settles: tuple[int, str] | None = None  # (outbox entry, "done" or "failed") it answers


Job = IssueJob | StepJob


@dataclass
class AdminJob:
    """A rare single statement (tokens): runs alone, never inside a batch."""

    sql: str
    args: tuple[Any, ...]
    future: asyncio.Future[int]
    size: int = 1


async def run_admin(conn: aiosqlite.Connection, job: AdminJob) -> None:
    """Run one admin statement in its own transaction."""
    try:
        cur = await conn.execute(job.sql, job.args)
        await conn.commit()
    except sqlite3.Error as exc:
        await _rollback(conn)
        if not job.future.done():
            job.future.set_exception(exc)
        return
    if not job.future.done():
        job.future.set_result(cur.rowcount)


@dataclass
class _Plan:
    """The rows one batch will write, worked out in Python before any INSERT."""

    station: str
    at: str
    seq: int
    head: str
    last_unit: int
    events: list[tuple[Any, ...]] = field(default_factory=list)
    updates: list[tuple[Any, ...]] = field(default_factory=list)
    keys: list[tuple[Any, ...]] = field(default_factory=list)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    outbox_settled: list[tuple[str, int]] = field(default_factory=list)
    results: list[tuple[Job, Any]] = field(default_factory=list)

    def event(self, unit_id: int, uci: str, kind: str, actor: str, text: str) -> int:
        """Append one event (data already canonical JSON) to the chain; returns its seq."""
        self.seq += 1
        self.head = event_hash(self.head, self.seq, uci, kind, self.at, self.station, actor,
                               text)
        self.events.append(
            (self.seq, unit_id, uci, kind, self.at, self.station, actor, text, self.head))
        return self.seq


class BatchWriter:
    """Writes batches over the one writer connection, keeping the chain head in memory.

    The connection runs with isolation_level IMMEDIATE, so the first INSERT opens the write
    transaction without a call of its own; a plain batch costs two thread hops (the events,
    whose trigger makes the unit rows, and the commit) whatever its size. Lookups run just
    before, outside the lock: anything another process (the CLI) wrote meanwhile makes an
    insert hit a unique index (event seq, UCI, live hardware id), and the batch is re-planned
    from a fresh head.
    """

    def __init__(self, conn: aiosqlite.Connection, station: str,
                 new_ucis: Callable[[int], list[str]]) -> None:
        self._conn, self._station, self._new_ucis = conn, station, new_ucis
        self._head: tuple[int, str, int] | None = None
        self.commits = 0
        # Why the newest batch could not be written (e.g. the disk is full); "" once one is.
        self.failure = ""

    async def _load_head(self) -> tuple[int, str, int]:
        """The newest event's seq and hash, and the newest unit's id."""
        rows = list(await self._conn.execute_fetchall(
            "SELECT (SELECT max(seq) FROM events),"
            " (SELECT hash FROM events ORDER BY seq DESC LIMIT 1), (SELECT max(id) FROM units)"))
        seq, digest, unit = rows[0]
        return seq or 0, digest or GENESIS, unit or 0

    async def write(self, jobs: list[Job]) -> None:
        """Write one batch in one transaction and resolve every job's future."""
        for attempt in range(COLLISION_RETRIES):
            try:
                if self._head is None:
                    self._head = await self._load_head()
                plan = await self._write(jobs, *self._head)
            except sqlite3.IntegrityError as exc:
                await _rollback(self._conn)
                # Another process appended, or (about never) 80 random bits repeated: the
                # unique indexes caught it; plan again from the journal as it is now.
                self._head = None
                if attempt + 1 < COLLISION_RETRIES:
                    continue
                log.error("journal refused a batch of %d requests: %s", len(jobs), exc)
                fail_jobs(jobs, JournalUnavailable(f"journal refused the write: {exc}"))
                return
            except (sqlite3.Error, OSError) as exc:
                await _rollback(self._conn)
                self._head = None
                self.failure = write_failure(exc)
                log.error("journal write failed, %d requests refused (nothing stored): %s",
                          len(jobs), self.failure)
                fail_jobs(jobs, JournalUnavailable(
                    f"journal write failed, nothing stored: {self.failure}"))
                return
            self._head = (plan.seq, plan.head, plan.last_unit)
            self.commits += 1
            self.failure = ""
            for job, outcome in plan.results:
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)
            return

    async def _lookup(self, sql: str, values: list[Any]) -> list[Any]:
        if not values:
            return []
        return list(await self._conn.execute_fetchall(sql, (json.dumps(values),)))

    async def _write(self, jobs: list[Job], seq: int, head: str, last_unit: int) -> _Plan:
        plan = _Plan(station=self._station, at=utc_now(), seq=seq, head=head,
                     last_unit=last_unit)
        issues = [j for j in jobs if isinstance(j, IssueJob)]
        steps = [j for j in jobs if isinstance(j, StepJob)]
        hw_rows = await self._lookup(
            "SELECT u.product, u.hardware_id, u.uci FROM json_each(?) AS j JOIN units AS u"
            " ON u.product = json_extract(j.value, '$[0]')"
            " AND u.hardware_id = json_extract(j.value, '$[1]')"
            " WHERE u.state <> 'voided'",
            sorted({(j.request.product, j.request.hardware_id) for j in issues
                    if j.request.hardware_id}),
        )
        key_rows = await self._lookup(
            "SELECT key, fingerprint, ucis FROM idempotency"
            " WHERE key IN (SELECT value FROM json_each(?))",
            sorted({j.request.idempotency_key for j in issues if j.request.idempotency_key}),
        )
        state_rows = await self._lookup(
            "SELECT uci, id, state FROM units WHERE uci IN (SELECT value FROM json_each(?))",
            sorted({j.uci for j in steps}),
        )
        outbox_rows = await self._lookup(
            "SELECT id, state FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
            sorted({j.settles[0] for j in steps if j.settles is not None}),
        )
        entries: dict[int, str] = dict(outbox_rows)
        by_hardware: dict[tuple[str, str], str] = {(p, h): u for p, h, u in hw_rows}
        by_key = {k: (f, json.loads(u)) for k, f, u in key_rows}
        states: dict[str, tuple[int, str]] = {u: (i, st) for u, i, st in state_rows}

        for job in jobs:
            if isinstance(job, IssueJob):
                plan.results.append((job, _plan_issue(plan, job.request, by_hardware, by_key,
                                                      states, self._new_ucis)))
            else:
                plan.results.append((job, _plan_step(plan, job, states, entries)))

        conn = self._conn
        if plan.keys:
            await conn.executemany("INSERT INTO idempotency VALUES (?, ?, ?, ?)", plan.keys)
        if plan.events:
            # Unit rows are made from their `issued` events by a trigger (migrations.py).
            await conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                   plan.events)
        if plan.updates:
            await conn.executemany(
                "UPDATE units SET state = ?, updated_at = ?, last_seq = ? WHERE id = ?",
                plan.updates)
        if plan.outbox:  # a unit verified twice still asks the upstream once
            await conn.executemany(
                "INSERT OR IGNORE INTO outbox (unit_id, uci, action, payload, key, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", plan.outbox)
        if plan.outbox_settled:
            # Back to 'pending' (a person asked for another try) starts the backoff afresh.
            await conn.executemany(
                "UPDATE outbox SET state = ?1, attempts = iif(?1 = 'pending', 0, attempts),"
                " next_at = iif(?1 = 'pending', 0, next_at) WHERE id = ?2",
                plan.outbox_settled)
        if plan.events or plan.keys or plan.updates or plan.outbox_settled:
            failpoints.hit("journal.commit")
            await conn.commit()  # returns once the WAL is synced (synchronous=FULL)
            failpoints.hit("journal.committed")
        return plan


def write_failure(exc: sqlite3.Error | OSError) -> str:
    """What a failed write means for a person: a full disk says where to make room."""
    full = (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or getattr(exc, "errno", None) == errno.ENOSPC)
    if full:
        return f"the journal's disk is full ({exc}); make room where the journal is"
    return str(exc)


def fail_jobs(jobs: list[Job], error: JournalError) -> None:
    """Answer every job of a batch that was not written with the same error."""
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)


async def _rollback(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        await conn.rollback()


def _plan_issue(plan: _Plan, req: IssueRequest, by_hardware: dict[tuple[str, str], str],
                by_key: dict[str, tuple[str, list[str]]], states: dict[str, tuple[int, str]],
                new_ucis: Callable[[int], list[str]]) -> IssueResult | JournalError:
    key = req.idempotency_key
    if key is not None and key in by_key:
        fingerprint, ucis = by_key[key]
        if fingerprint != req.fingerprint:
            return IdempotencyConflict(key)
        return IssueResult(ucis=ucis, created=False)
    hardware = (req.product, req.hardware_id) if req.hardware_id else None
    if hardware is not None and hardware in by_hardware:
        ucis = [by_hardware[hardware]]
        created = False
    else:
        ucis = []
        data: dict[str, Any] = {"product": req.product}
        if req.hardware_id:
            data["hardware_id"] = req.hardware_id
        if key is not None:
            data["idempotency_key"] = key
        text = canonical_data(data)
        for uci in new_ucis(req.count):
            while uci in states:  # drawn twice in this batch: draw again
                uci = new_ucis(1)[0]
            plan.last_unit += 1
            plan.event(plan.last_unit, uci, "issued", req.actor, text)
            states[uci] = (plan.last_unit, "issued")
            ucis.append(uci)
        if hardware is not None:
            by_hardware[hardware] = ucis[0]
        created = True
    if key is not None:
        by_key[key] = (req.fingerprint, ucis)
        plan.keys.append((key, req.fingerprint, json.dumps(ucis), plan.at))
    return IssueResult(ucis=ucis, created=created)


def _plan_step(plan: _Plan, job: StepJob, states: dict[str, tuple[int, str]],
               entries: dict[int, str]) -> JournalError | None:
    if job.settles is not None:
        entry, outcome = job.settles
        held = entries.get(entry, "pending")
        if outcome != "pending" and held != "pending":  # another worker answered it first
            return OutboxSettled(entry, held)
        entries[entry] = outcome
    text = canonical_data(job.data)
    if not job.uci:  # a station event (a fixture's failure before any UCI): unit 0
        plan.event(0, "", job.kind, job.actor, text)
        return None
    if job.uci not in states:
        return UnitNotFound(job.uci)
    unit_id, state = states[job.uci]
    if state in job.refuse_from:
        return AlreadyVoided(job.uci) if state == "voided" else JournalError(
            f"unit {job.uci} is {state}; {job.kind} is not allowed now")
    seq = plan.event(unit_id, job.uci, job.kind, job.actor, text)
    new_state = job.state or state
    plan.updates.append((new_state, plan.at, seq, unit_id))
    states[job.uci] = (unit_id, new_state)
    if job.enqueue is not None:
        request = job.enqueue  # its key dedupes: INSERT OR IGNORE drops a second one
        plan.outbox.append((unit_id, job.uci, request.action, canonical_data(request.to_json()),
                            request.key, plan.at))
    if job.settles is not None:
        entry, outcome = job.settles
        plan.outbox_settled.append((outcome, entry))
    return None
