"""Group commit: everything queued while the last transaction was on disk goes in the next one.

One writer connection, one transaction per batch, a handful of statements per batch whatever
its size: aiosqlite hops to its thread for every call (and each hop waits for a busy event
loop), so rows are grouped, never awaited one by one. A job's future resolves only after
COMMIT returned, i.e. after the WAL was synced.

One request never fails another: a job is checked when it is made (jobs.py); one that still
breaks its batch's planning is taken out and the batch planned again without it; one that
breaks the INSERTs is found by writing the batch in halves until it is alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import aiosqlite

from factory import failpoints
from factory.journal.chain import GENESIS
from factory.journal.errors import InvalidData, JournalUnavailable
from factory.journal.jobs import AdminJob, IssueJob, Job, StepJob, answer, fail_jobs
from factory.journal.plan import (
    Known,
    Plan,
    Unplannable,
    answer_committed,
    plan_jobs,
    utc_now,
)

log = logging.getLogger("factory.journal")

COLLISION_RETRIES = 5
BUSY = "another process is writing the journal; try again"
# What a job's own values do to SQLite or Python (a type it cannot bind, an integer past 64
# bits, text it cannot encode), as opposed to the file failing (full, locked, I/O error).
DATA_ERRORS = (ValueError, TypeError, OverflowError, sqlite3.InterfaceError,
               sqlite3.ProgrammingError, sqlite3.DataError)


async def run_admin(conn: aiosqlite.Connection, job: AdminJob) -> None:
    """Run one admin statement in its own transaction; whatever it raises is its own."""
    try:
        cur = await conn.execute(job.sql, job.args)
        await conn.commit()
    except Exception as exc:  # e.g. a name SQLite cannot encode: the writer goes on
        await _rollback(conn)
        if not job.future.done():
            job.future.set_exception(exc)
        return
    if not job.future.done():
        job.future.set_result(cur.rowcount)


class BatchWriter:
    """Writes batches over the one writer connection, keeping the chain head in memory.

    The connection runs with isolation_level IMMEDIATE, so the first INSERT opens the write
    transaction without a call of its own; a plain batch costs two thread hops (the events,
    whose trigger makes the unit rows, and the commit) whatever its size. Lookups run just
    before, outside the lock: anything another process (the CLI) wrote meanwhile makes an
    insert hit a unique index (event seq, UCI, live hardware id), and the batch is planned
    again, this time inside the write lock (BEGIN IMMEDIATE first), so the other process cannot
    slip in again between the head read and the INSERTs.
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
        """Write one batch in one transaction and answer every job; a job that cannot be
        written is answered alone and the others are written without it."""
        jobs = list(jobs)
        collisions = 0
        while jobs:
            try:
                plan = await self._attempt(jobs, locked=collisions > 0)
            except Unplannable as exc:
                await _rollback(self._conn)
                log.warning("journal refused one request its batch could not plan: %s", exc)
                answer(exc.job, InvalidData("(request)", f"cannot be journaled ({exc}); "
                                                         "check the values it carries"))
                jobs.remove(exc.job)
                continue
            except sqlite3.IntegrityError as exc:
                await _rollback(self._conn)
                # Another process appended, or (about never) 80 random bits repeated: the
                # unique indexes caught it; plan again from the journal as it is now.
                self._head = None
                collisions += 1
                if collisions < COLLISION_RETRIES:
                    continue
                if len(jobs) > 1:  # under the lock, too: one job's own rows collide
                    await self._halves(jobs)
                    return
                log.error("journal refused a request after %d tries: %s", collisions, exc)
                fail_jobs(jobs, JournalUnavailable(BUSY))
                return
            except DATA_ERRORS as exc:
                await _rollback(self._conn)
                if len(jobs) > 1:
                    await self._halves(jobs)
                    return
                log.warning("journal refused one request it could not store: %s", exc)
                fail_jobs(jobs, InvalidData("(request)", f"cannot be journaled "
                                                         f"({type(exc).__name__}: {exc}); "
                                                         "check the values it carries"))
                return
            except (sqlite3.Error, OSError) as exc:
                await _rollback(self._conn)
                self._head = None
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                    log.error("journal write lock not had: %s", exc)
                    fail_jobs(jobs, JournalUnavailable(BUSY))
                    return
                self.failure = write_failure(exc)
                log.error("journal write failed, %d requests refused (nothing stored): %s",
                          len(jobs), self.failure)
                fail_jobs(jobs, JournalUnavailable(
                    f"journal write failed, nothing stored: {self.failure}"))
                return
            except Exception as exc:  # a bug: nothing half-written stays in the transaction
                await _rollback(self._conn)
                self._head = None
                log.exception("journal writer failed a batch")
                fail_jobs(jobs, JournalUnavailable(f"journal write failed: {exc}"))
                return
            self._head = (plan.seq, plan.head, plan.last_unit)
            self.commits += 1
            self.failure = ""
            answer_committed(plan)
            return

    async def _halves(self, jobs: list[Job]) -> None:
        """Write a batch that fails as a whole in two halves, until the failing job is alone."""
        half = len(jobs) // 2
        await self.write(jobs[:half])
        await self.write(jobs[half:])

    async def _lookup(self, sql: str, values: list[Any]) -> list[Any]:
        if not values:
            return []
        return list(await self._conn.execute_fetchall(sql, (json.dumps(values),)))

    async def _attempt(self, jobs: list[Job], *, locked: bool) -> Plan:
        if locked:  # after a collision: take the write lock before reading the head
            await self._conn.execute("BEGIN IMMEDIATE")
            self._head = None
        if self._head is None:
            self._head = await self._load_head()
        seq, head, last_unit = self._head
        plan = Plan(station=self._station, at=utc_now(), seq=seq, head=head,
                    last_unit=last_unit)
        plan_jobs(plan, jobs, await self._known(jobs), self._new_ucis)
        await self._insert(plan)
        return plan

    async def _known(self, jobs: list[Job]) -> Known:
        """What the batch needs to know of the journal: hardware ids and keys already
        issued, the units its steps are for, the outbox entries they settle."""
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
        return Known(by_hardware={(p, h): u for p, h, u in hw_rows},
                     by_key={k: (f, json.loads(u)) for k, f, u in key_rows},
                     states={u: (i, st) for u, i, st in state_rows},
                     entries=dict(outbox_rows))

    async def _insert(self, plan: Plan) -> None:
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
                [row[:4] for row in plan.updates])
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
        elif conn.in_transaction:  # planned under the lock, nothing to write
            await conn.rollback()


def write_failure(exc: sqlite3.Error | OSError) -> str:
    """What a failed write means for a person: a full disk says where to make room."""
    full = (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or getattr(exc, "errno", None) == errno.ENOSPC)
    if full:
        return f"the journal's disk is full ({exc}); make room where the journal is"
    return str(exc)


async def _rollback(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        await conn.rollback()
