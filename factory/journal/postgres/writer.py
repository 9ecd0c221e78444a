"""Group commit on PostgreSQL: everything queued while the last transaction was committing goes
in the next one, planned in Python and written with one statement per table (arrays through
unnest), in pipeline mode: BEGIN, the lock, the INSERTs and COMMIT go in one round trip (two
when the batch needs lookups), whatever the batch's size.

The chain head is kept in memory between batches, like the SQLite writer's: another process of
the same station (the CLI) appending meanwhile makes the first INSERT hit the (station, seq)
key, and the batch is planned again with the head read inside the station's advisory lock,
so the chain is never forked. What another *station* writes meanwhile (the same hardware id, a UCI
drawn twice) hits a unique index the same way. A job's future resolves only after COMMIT
returned, with synchronous_commit on: the WAL is flushed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from factory import clock, failpoints
from factory.journal.chain import GENESIS, canonical_data, event_hash
from factory.journal.errors import (
    AlreadyVoided,
    IdempotencyConflict,
    JournalError,
    JournalUnavailable,
    OutboxSettled,
    UnitNotFound,
    Unstorable,
)
from factory.journal.interface import OutboxRequest
from factory.journal.records import IssueRequest, IssueResult

log = logging.getLogger("factory.journal")

MAX_UNITS_PER_BATCH = 20_000
COLLISION_RETRIES = 5


def utc_now() -> str:
    """Journal time, as the SQLite journal writes it (the same text is hashed)."""
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
    """A step of a unit (no UCI: an event of the station itself); `state` None keeps it."""

    uci: str
    kind: str
    state: str | None
    actor: str
    data: dict[str, Any]
    future: asyncio.Future[None]
    refuse_from: frozenset[str] = frozenset()
    size: int = 1
    enqueue: OutboxRequest | None = None
    settles: tuple[int, str] | None = None


Job = IssueJob | StepJob


@dataclass
class AdminJob:
    """A rare single statement (tokens, outbox bookkeeping): runs alone."""

    sql: str
    args: tuple[Any, ...]
    future: asyncio.Future[int]
    size: int = 1


@dataclass
class _Plan:
    station: str
    at: str
    seq: int
    head: str
    events: list[tuple[Any, ...]] = field(default_factory=list)
    units: list[tuple[Any, ...]] = field(default_factory=list)
    updates: dict[str, tuple[str, int]] = field(default_factory=dict)
    keys: list[tuple[Any, ...]] = field(default_factory=list)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    outbox_settled: list[tuple[str, int]] = field(default_factory=list)
    results: list[tuple[Job, Any]] = field(default_factory=list)

    def event(self, uci: str, kind: str, actor: str, text: str) -> int:
        self.seq += 1
        self.head = event_hash(self.head, self.seq, uci, kind, self.at, self.station, actor,
                               text)
        self.events.append((self.seq, uci, kind, self.at, actor, text, self.head))
        return self.seq


def fail_jobs(jobs: list[Job], error: JournalError) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for `unnest`."""
    return [[row[i] for row in rows] for i in range(width)] if rows else [[]] * width


class BatchWriter:
    """Writes batches over one connection (opened again after it broke)."""

    def __init__(self, connect: Callable[[], Any], station: str,
                 new_ucis: Callable[[int], list[str]]) -> None:
        self._connect, self._station, self._new_ucis = connect, station, new_ucis
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self._head: tuple[int, str] | None = None  # the chain's (seq, hash) after our commit
        self.commits = 0
        self.failure = ""

    async def _conn(self) -> psycopg.AsyncConnection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = await self._connect()
        return self.conn

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def admin(self, job: AdminJob) -> None:
        try:
            conn = await self._conn()
            async with conn.transaction():
                cur = await conn.execute(job.sql, job.args)
        except psycopg.Error as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(cur.rowcount)

    async def write(self, jobs: list[Job]) -> None:
        """Write one batch in one transaction and resolve every job's future."""
        for attempt in range(COLLISION_RETRIES):
            try:
                conn = await self._conn()
                async with conn.pipeline(), conn.transaction():
                    plan = await self._write(conn, jobs)
            except pg_errors.UniqueViolation as exc:
                # Another process of this station appended (our head is stale), another
                # station took the hardware id, or a UCI repeated: plan again from the database.
                self._head = None
                if attempt + 1 < COLLISION_RETRIES:
                    continue
                log.error("journal refused a batch of %d requests: %s", len(jobs), exc)
                fail_jobs(jobs, JournalUnavailable(f"journal refused the write: {exc}"))
                return
            except (psycopg.Error, OSError) as exc:
                self._head = None
                self.failure = f"the PostgreSQL journal failed: {exc}".strip()
                if self.conn is not None and self.conn.broken:
                    self.conn = None  # opened again for the next batch
                log.error("journal write failed, %d requests refused (nothing stored): %s",
                          len(jobs), self.failure)
                fail_jobs(jobs, JournalUnavailable(
                    f"journal write failed, nothing stored: {self.failure}"))
                return
            self.commits += 1
            self.failure = ""
            self._head = (plan.seq, plan.head)
            for job, outcome in plan.results:
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)
            return

    async def _write(self, conn: psycopg.AsyncConnection[Any], jobs: list[Job]) -> _Plan:
        station = self._station
        # Every batch takes the lock (queued, not awaited: it goes with the INSERTs), so one
        # planned from a fresh head always wins: a writer whose cached head is stale waits,
        # collides once and reads it again. The head is read in a statement of its own after
        # the lock: read committed takes a snapshot per statement, and one taken before the
        # lock was granted misses the commit of the writer that held it (found by two
        # journals of one station writing at once).
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (station,))
        issues = [j for j in jobs if isinstance(j, IssueJob)]
        steps = [j for j in jobs if isinstance(j, StepJob)]
        # Lookups leave out what holds a NUL: the plan refuses those requests (`_nul`).
        wanted = sorted({(j.request.product, j.request.hardware_id) for j in issues
                         if j.request.hardware_id
                         and _nul(j.request.product, j.request.hardware_id) is None})
        keys = sorted({j.request.idempotency_key for j in issues if j.request.idempotency_key
                       and _nul(j.request.idempotency_key) is None})
        ucis = sorted({j.uci for j in steps if j.uci and _nul(j.uci) is None})
        settled = sorted({j.settles[0] for j in steps if j.settles is not None})
        # Every lookup is sent before any result is read: one round trip for all of them.
        head_cur = None if self._head is not None else await conn.execute(
            "SELECT (SELECT seq FROM events WHERE station = %s ORDER BY seq DESC LIMIT 1),"
            " (SELECT hash FROM events WHERE station = %s ORDER BY seq DESC LIMIT 1)",
            (station, station))
        hw_cur = await conn.execute(
            "SELECT u.product, u.hardware_id, u.uci FROM units AS u"
            " JOIN unnest(%b::text[], %b::text[]) AS j(p, h)"
            " ON u.product = j.p AND u.hardware_id = j.h WHERE u.state <> 'voided'",
            _columns(wanted, 2)) if wanted else None
        key_cur = await conn.execute(
            "SELECT key, fingerprint, ucis FROM idempotency"
            " WHERE station = %s AND key = ANY(%s)", (station, keys)) if keys else None
        state_cur = await conn.execute(
            "SELECT uci, state FROM units WHERE uci = ANY(%s)", (ucis,)) if ucis else None
        outbox_cur = await conn.execute(
            "SELECT id, state FROM outbox WHERE id = ANY(%s)", (settled,)) if settled else None
        if head_cur is not None:
            seq, digest = (await head_cur.fetchall())[0]
            self._head = (seq or 0, digest or GENESIS)
        assert self._head is not None
        plan = _Plan(station=station, at=utc_now(), seq=self._head[0], head=self._head[1])
        by_hardware: dict[tuple[str, str], str] = {}
        if hw_cur is not None:
            by_hardware = {(p, h): u for p, h, u in await hw_cur.fetchall()}
        by_key: dict[str, tuple[str, list[str]]] = {}
        if key_cur is not None:
            by_key = {k: (f, json.loads(u)) for k, f, u in await key_cur.fetchall()}
        states: dict[str, str] = dict(await state_cur.fetchall()) if state_cur else {}
        entries: dict[int, str] = dict(await outbox_cur.fetchall()) if outbox_cur else {}

        for job in jobs:
            if isinstance(job, IssueJob):
                plan.results.append((job, _plan_issue(plan, job.request, by_hardware, by_key,
                                                      states, self._new_ucis)))
            else:
                plan.results.append((job, _plan_step(plan, job, states, entries)))
        await _execute(conn, plan)
        if plan.events or plan.keys or plan.outbox_settled:
            failpoints.hit("journal.commit")
        return plan


async def _execute(conn: psycopg.AsyncConnection[Any], plan: _Plan) -> None:
    station = plan.station
    if plan.keys:
        await conn.execute(
            "INSERT INTO idempotency (station, key, fingerprint, ucis, created_at)"
            " SELECT %s, * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[])",
            (station, *_columns(plan.keys, 4)))
    if plan.events:
        await conn.execute(
            "INSERT INTO events (station, seq, uci, kind, at, actor, data, hash)"
            " SELECT %s, * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[],"
            " %b::text[], %b::text[], %b::text[])", (station, *_columns(plan.events, 7)))
    if plan.units:
        await conn.execute(
            "INSERT INTO units (uci, product, hardware_id, state, station, created_at,"
            " updated_at, last_station, last_seq)"
            " SELECT u, p, h, 'issued', %s, %s, %s, %s, s"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[]) AS j(u, p, h, s)",
            (station, plan.at, plan.at, station, *_columns(plan.units, 4)))
    if plan.updates:
        rows = [(uci, state, seq) for uci, (state, seq) in plan.updates.items()]
        await conn.execute(
            "UPDATE units SET state = j.st, updated_at = %s, last_station = %s, last_seq = j.s"
            " FROM unnest(%b::text[], %b::text[], %b::bigint[]) AS j(u, st, s)"
            " WHERE units.uci = j.u", (plan.at, station, *_columns(rows, 3)))
    if plan.outbox:  # a unit verified twice still asks the upstream once
        await conn.execute(
            "INSERT INTO outbox (station, uci, action, payload, key, created_at)"
            " SELECT %s, * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[],"
            " %b::text[]) ON CONFLICT (key) DO NOTHING", (station, *_columns(plan.outbox, 5)))
    for outcome, entry in plan.outbox_settled:
        # Back to 'pending' (a person asked for another try) starts the backoff afresh.
        await conn.execute(
            "UPDATE outbox SET state = %s,"
            " attempts = CASE WHEN %s = 'pending' THEN 0 ELSE attempts END,"
            " next_at = CASE WHEN %s = 'pending' THEN 0 ELSE next_at END WHERE id = %s",
            (outcome, outcome, outcome, entry))


def _nul(*texts: str | None) -> Unstorable | None:
    """PostgreSQL text cannot hold NUL: one such request must not fail its whole batch."""
    if any(text and "\x00" in text for text in texts):
        return Unstorable("the request holds a NUL character, which the PostgreSQL journal "
                          "cannot store; send it without")
    return None


def _plan_issue(plan: _Plan, req: IssueRequest, by_hardware: dict[tuple[str, str], str],
                by_key: dict[str, tuple[str, list[str]]], states: dict[str, str],
                new_ucis: Callable[[int], list[str]]) -> IssueResult | JournalError:
    if (refused := _nul(req.product, req.hardware_id, req.idempotency_key, req.fingerprint,
                        req.actor)) is not None:
        return refused
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
            seq = plan.event(uci, "issued", req.actor, text)
            plan.units.append((uci, req.product, req.hardware_id, seq))
            states[uci] = "issued"
            ucis.append(uci)
        if hardware is not None:
            by_hardware[hardware] = ucis[0]
        created = True
    if key is not None:
        by_key[key] = (req.fingerprint, ucis)
        plan.keys.append((key, req.fingerprint, json.dumps(ucis), plan.at))
    return IssueResult(ucis=ucis, created=created)


def _plan_step(plan: _Plan, job: StepJob, states: dict[str, str],
               entries: dict[int, str]) -> JournalError | None:
    if (refused := _nul(job.uci, job.kind, job.actor)) is not None:
        return refused
    if job.settles is not None:
        entry, outcome = job.settles
        held = entries.get(entry, "pending")
        if outcome != "pending" and held != "pending":  # another worker answered it first
            return OutboxSettled(entry, held)
        entries[entry] = outcome
    text = canonical_data(job.data)
    if not job.uci:  # an event of the station itself
        plan.event("", job.kind, job.actor, text)
        return None
    if job.uci not in states:
        return UnitNotFound(job.uci)
    state = states[job.uci]
    if state in job.refuse_from:
        return AlreadyVoided(job.uci) if state == "voided" else JournalError(
            f"unit {job.uci} is {state}; {job.kind} is not allowed now")
    seq = plan.event(job.uci, job.kind, job.actor, text)
    new_state = job.state or state
    plan.updates[job.uci] = (new_state, seq)
    states[job.uci] = new_state
    if job.enqueue is not None:
        request = job.enqueue
        plan.outbox.append((job.uci, request.action, canonical_data(request.to_json()),
                            request.key, plan.at))
    if job.settles is not None:
        entry, outcome = job.settles
        plan.outbox_settled.append((outcome, entry))
    return None
