"""Group commit on PostgreSQL: everything queued while the last transaction was committing goes
in the next one, planned in Python (journal/plan.py, as the SQLite writer plans) and written
with one statement per table (arrays through unnest, sent binary), in pipeline mode: BEGIN,
the lock, the INSERTs and COMMIT go in one round trip, one Sync (postgres/pipelined.py; two
round trips when the batch needs lookups), whatever the batch's size. Big batches go in parts
with the singles between (journal/queue.py).

The chain head is kept in memory between batches, like the SQLite writer's: another process of
the same station (the CLI) appending meanwhile makes the first INSERT hit the (station, seq)
key, and the batch is planned again with the head read inside the station's advisory lock,
so the chain is never forked. What another *station* writes meanwhile (the same hardware id, a
UCI drawn twice) hits a unique index the same way. A job's future resolves only after COMMIT
returned, with synchronous_commit on: the WAL is flushed; its caller is told only once the
station's anchor holds that head too (the core's anchor loop).

One request never fails another: text holding NUL (PostgreSQL cannot store it) is refused
before planning; a job that breaks its batch's planning is taken out and the batch planned
again without it; one that breaks the INSERTs is found by writing the batch in halves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from factory import failpoints
from factory.journal.chain import GENESIS
from factory.journal.errors import InvalidData, JournalUnavailable, Unstorable
from factory.journal.jobs import AdminJob, IssueJob, Job, StepJob, answer, fail_jobs
from factory.journal.plan import (
    Known,
    Plan,
    Unplannable,
    answer_committed,
    plan_jobs,
    utc_now,
)
from factory.journal.postgres.pipelined import in_one_sync

log = logging.getLogger("factory.journal")

COLLISION_RETRIES = 5
# What a job's own values do to PostgreSQL or psycopg (a number past bigint, text it cannot
# encode), as opposed to the server failing or going away.
DATA_ERRORS = (ValueError, TypeError, OverflowError, psycopg.DataError)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for `unnest`."""
    return [[row[i] for row in rows] for i in range(width)] if rows else [[]] * width


def _nul(job: Job) -> Unstorable | None:
    """PostgreSQL text cannot hold NUL: one such request must not fail its whole batch."""
    if isinstance(job, IssueJob):
        req = job.request
        texts: tuple[str | None, ...] = (req.product, req.hardware_id, req.idempotency_key,
                                         req.fingerprint, req.actor, job.text)
    else:
        texts = (job.uci, job.kind, job.actor, job.text, job.outbox_text)
    if any(text and "\x00" in text for text in texts):
        return Unstorable("the request holds a NUL character, which the PostgreSQL journal "
                          "cannot store; send it without")
    return None


class BatchWriter:
    """Writes batches over one connection (opened again after it broke)."""

    def __init__(self, connect: Callable[[], Any], station: str,
                 new_ucis: Callable[[int], list[str]]) -> None:
        self._connect, self._station, self._new_ucis = connect, station, new_ucis
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self._head: tuple[int, str] | None = None  # the chain's (seq, hash) after our commit
        # The newest head committed: the anchor reaches it before callers are told (core.py).
        self.committed: tuple[int, str] | None = None
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
        """Run one admin statement in its own transaction; whatever it raises is its own."""
        try:
            conn = await self._conn()
            async with conn.transaction():
                cur = await conn.execute(job.sql, job.args)
        except Exception as exc:  # e.g. a name that cannot be encoded: the writer goes on
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(cur.rowcount)

    async def write(self, jobs: list[Job]) -> None:
        """Write one batch in one transaction and answer every job; a job that cannot be
        written is answered alone and the others are written without it."""
        jobs = list(jobs)
        for job in list(jobs):
            if (refused := _nul(job)) is not None:
                answer(job, refused)
                jobs.remove(job)
        collisions = 0
        while jobs:
            try:
                conn = await self._conn()
                plan = await self._transaction(conn, jobs)
            except Unplannable as exc:
                log.warning("journal refused one request its batch could not plan: %s", exc)
                answer(exc.job, InvalidData("(request)", f"cannot be journaled ({exc}); "
                                                         "check the values it carries"))
                jobs.remove(exc.job)
                continue
            except pg_errors.UniqueViolation as exc:
                # Another process of this station appended (our head is stale), another
                # station took the hardware id, or a UCI repeated: plan again from the database.
                self._head = None
                collisions += 1
                if collisions < COLLISION_RETRIES:
                    continue
                if len(jobs) > 1:  # one job's own rows collide
                    await self._halves(jobs)
                    return
                log.error("journal refused a request after %d tries: %s", collisions, exc)
                fail_jobs(jobs, JournalUnavailable(f"journal refused the write: {exc}"))
                return
            except DATA_ERRORS as exc:
                self._head = None
                if len(jobs) > 1:
                    await self._halves(jobs)
                    return
                log.warning("journal refused one request it could not store: %s", exc)
                fail_jobs(jobs, InvalidData("(request)", f"cannot be journaled "
                                                         f"({type(exc).__name__}: {exc}); "
                                                         "check the values it carries"))
                return
            except JournalUnavailable as exc:  # the server is away: refused until it is back
                self._head = None
                self.failure = str(exc)
                fail_jobs(jobs, exc)
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
            if plan.events:
                self.committed = self._head
            answer_committed(plan)
            return

    async def _transaction(self, conn: psycopg.AsyncConnection[Any], jobs: list[Job]) -> Plan:
        plan = await in_one_sync(conn, lambda: self._attempt(conn, jobs))
        if plan.events or plan.keys or plan.outbox_settled:
            failpoints.hit("journal.committed")
        return plan

    async def _halves(self, jobs: list[Job]) -> None:
        """Write a batch that fails as a whole in two halves, until the failing job is alone."""
        half = len(jobs) // 2
        await self.write(jobs[:half])
        await self.write(jobs[half:])

    async def _attempt(self, conn: psycopg.AsyncConnection[Any], jobs: list[Job]) -> Plan:
        station = self._station
        # Every batch takes the lock (queued, not awaited: it goes with the INSERTs), so one
        # planned from a fresh head always wins: a writer whose cached head is stale waits,
        # collides once and reads it again. The head is read in a statement of its own after
        # the lock: read committed takes a snapshot per statement, and one taken before the
        # lock was granted misses the commit of the writer that held it (found by two
        # journals of one station writing at once).
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (station,))
        head = None if self._head is not None else await conn.execute(
            "SELECT (SELECT seq FROM events WHERE station = %s ORDER BY seq DESC LIMIT 1),"
            " (SELECT hash FROM events WHERE station = %s ORDER BY seq DESC LIMIT 1)",
            (station, station))
        known = await self._known(conn, jobs)
        if head is not None:
            seq, digest = (await head.fetchall())[0]
            self._head = (seq or 0, digest or GENESIS)
        assert self._head is not None
        plan = Plan(station=station, at=utc_now(), seq=self._head[0], head=self._head[1],
                    last_unit=0)
        plan_jobs(plan, jobs, await known(), self._new_ucis)
        await _insert(conn, plan)
        if plan.events or plan.keys or plan.outbox_settled:
            failpoints.hit("journal.commit")
        return plan

    async def _known(self, conn: psycopg.AsyncConnection[Any],
                     jobs: list[Job]) -> Callable[[], Any]:
        """Send the batch's lookups (hardware ids and keys already issued, the units its steps
        are for, the outbox entries they settle); returns what reads their answers, so every
        lookup goes in one round trip."""
        issues = [j for j in jobs if isinstance(j, IssueJob)]
        steps = [j for j in jobs if isinstance(j, StepJob)]
        wanted = sorted({(j.request.product, j.request.hardware_id) for j in issues
                         if j.request.hardware_id})
        keys = sorted({j.request.idempotency_key for j in issues if j.request.idempotency_key})
        ucis = sorted({j.uci for j in steps if j.uci})
        settled = sorted({j.settles[0] for j in steps if j.settles is not None})
        hw = await conn.execute(
            "SELECT u.product, u.hardware_id, u.uci FROM units AS u"
            " JOIN unnest(%b::text[], %b::text[]) AS j(p, h)"
            " ON u.product = j.p AND u.hardware_id = j.h WHERE u.state <> 'voided'",
            _columns(wanted, 2)) if wanted else None
        key = await conn.execute(
            "SELECT key, fingerprint, ucis FROM idempotency"
            " WHERE station = %s AND key = ANY(%b::text[])",
            (self._station, keys)) if keys else None
        state = await conn.execute(
            "SELECT uci, state FROM units WHERE uci = ANY(%b::text[])",
            (ucis,)) if ucis else None
        outbox = await conn.execute(
            "SELECT id, state FROM outbox WHERE id = ANY(%s::bigint[])",
            (settled,)) if settled else None

        async def read() -> Known:
            return Known(
                by_hardware={(p, h): u for p, h, u in await hw.fetchall()} if hw else {},
                by_key={k: (f, json.loads(u)) for k, f, u in await key.fetchall()} if key else {},
                states={u: (0, st) for u, st in await state.fetchall()} if state else {},
                entries=dict(await outbox.fetchall()) if outbox else {})

        return read


async def _insert(conn: psycopg.AsyncConnection[Any], plan: Plan) -> None:
    station = plan.station
    if plan.keys:
        await conn.execute(
            "INSERT INTO idempotency (station, key, fingerprint, ucis, created_at)"
            " SELECT %s, * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[])",
            (station, *_columns(plan.keys, 4)))
    if plan.events:
        rows = [(seq, uci, kind, at, actor, text, digest)
                for seq, _, uci, kind, at, _, actor, text, digest in plan.events]
        await conn.execute(
            "INSERT INTO events (station, seq, uci, kind, at, actor, data, hash)"
            " SELECT %s, * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[],"
            " %b::text[], %b::text[], %b::text[])", (station, *_columns(rows, 7)))
    if plan.issued:
        await conn.execute(
            "INSERT INTO units (uci, product, hardware_id, state, station, created_at,"
            " updated_at, last_station, last_seq)"
            " SELECT u, p, h, 'issued', %s, %s, %s, %s, s"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[]) AS j(u, p, h, s)",
            (station, plan.at, plan.at, station, *_columns(plan.issued, 4)))
    if plan.updates:
        # One row a unit (its newest state): UPDATE … FROM takes one row per target only.
        newest = {uci: (state, seq) for state, _, seq, _, uci in plan.updates}
        await conn.execute(
            "UPDATE units SET state = j.st, updated_at = %s, last_station = %s, last_seq = j.s"
            " FROM unnest(%b::text[], %b::text[], %b::bigint[]) AS j(u, st, s)"
            " WHERE units.uci = j.u",
            (plan.at, station, *_columns([(u, st, s) for u, (st, s) in newest.items()], 3)))
    if plan.outbox:  # a unit verified twice still asks the upstream once
        await conn.execute(
            "INSERT INTO outbox (station, uci, action, payload, key, created_at)"
            " SELECT %s, * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[],"
            " %b::text[]) ON CONFLICT (key) DO NOTHING",
            (station, *_columns([row[1:] for row in plan.outbox], 5)))
    for outcome, entry in plan.outbox_settled:
        # Back to 'pending' (a person asked for another try) starts the backoff afresh.
        await conn.execute(
            "UPDATE outbox SET state = %s,"
            " attempts = CASE WHEN %s = 'pending' THEN 0 ELSE attempts END,"
            " next_at = CASE WHEN %s = 'pending' THEN 0 ELSE next_at END"
            " WHERE id = %s::bigint", (outcome, outcome, outcome, entry))
