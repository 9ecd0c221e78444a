"""Group commit: everything queued while the last transaction was on disk goes in the next one.

One writer connection, one transaction per batch, a handful of statements per batch whatever
its size: aiosqlite hops to its thread for every call, so rows are grouped, never awaited one
by one. A job's future resolves only after COMMIT returned, i.e. after the WAL was synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from factory.journal.chain import GENESIS, canonical_data, event_hash
from factory.journal.errors import (
    AlreadyVoided,
    IdempotencyConflict,
    JournalError,
    JournalUnavailable,
    UnitNotFound,
)
from factory.journal.records import IssueRequest, IssueResult

MAX_UNITS_PER_BATCH = 20_000
COLLISION_RETRIES = 5


def utc_now() -> str:
    """Journal time: UTC, milliseconds, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class IssueJob:
    request: IssueRequest
    future: asyncio.Future[IssueResult]

    @property
    def size(self) -> int:
        return self.request.count


@dataclass
class StepJob:
    """Record a step of an existing unit (voided now; written, verified, … later)."""

    uci: str
    kind: str
    state: str
    actor: str
    data: dict[str, Any]
    future: asyncio.Future[None]
    refuse_from: frozenset[str] = frozenset()
    size: int = 1


Job = IssueJob | StepJob


@dataclass
class AdminJob:
    """A rare single statement (tokens): runs alone, never inside a batch."""

    sql: str
    args: tuple[Any, ...]
    future: asyncio.Future[int]
    size: int = 1


async def run_admin(conn: aiosqlite.Connection, job: AdminJob) -> None:
    """Run one admin statement in its own (autocommit) transaction."""
    try:
        cur = await conn.execute(job.sql, job.args)
    except sqlite3.Error as exc:
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
    units: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    updates: list[tuple[Any, ...]] = field(default_factory=list)
    keys: list[tuple[Any, ...]] = field(default_factory=list)
    results: list[tuple[Job, Any]] = field(default_factory=list)

    def event(self, uci: str, kind: str, actor: str, text: str) -> int:
        """Append one event (data already canonical JSON) to the chain; returns its seq."""
        self.seq += 1
        self.head = event_hash(self.head, self.seq, uci, kind, self.at, self.station, actor,
                               text)
        self.events.append((self.seq, uci, kind, self.at, self.station, actor, text, self.head))
        return self.seq


async def _lookup(conn: aiosqlite.Connection, sql: str, values: list[Any]) -> list[Any]:
    if not values:
        return []
    async with conn.execute(sql, (json.dumps(values),)) as cur:
        return list(await cur.fetchall())


async def write_batch(conn: aiosqlite.Connection, jobs: list[Job], station: str,
                      new_ucis: Callable[[int], list[str]]) -> None:
    """Write one batch in one transaction and resolve every job's future."""
    for attempt in range(COLLISION_RETRIES):
        try:
            plan = await _write(conn, jobs, station, new_ucis)
        except sqlite3.IntegrityError as exc:
            await _rollback(conn)
            # 80 random bits collide about never; the unique index makes sure, and we redraw.
            if "units.uci" in str(exc) and attempt + 1 < COLLISION_RETRIES:
                continue
            fail_jobs(jobs, JournalUnavailable(f"journal refused the write: {exc}"))
            return
        except (sqlite3.Error, OSError) as exc:
            await _rollback(conn)
            fail_jobs(jobs, JournalUnavailable(f"journal write failed, nothing stored: {exc}"))
            return
        for job, outcome in plan.results:
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        return


def fail_jobs(jobs: list[Job], error: JournalError) -> None:
    """Answer every job of a batch that was not written with the same error."""
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)


async def _rollback(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # no transaction was open
        await conn.execute("ROLLBACK")


async def _write(conn: aiosqlite.Connection, jobs: list[Job], station: str,
                 new_ucis: Callable[[int], list[str]]) -> _Plan:
    await conn.execute("BEGIN IMMEDIATE")
    # Read the head inside the write lock: another process (the CLI) may have appended.
    async with conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1") as cur:
        row = await cur.fetchone()
    plan = _Plan(station=station, at=utc_now(), seq=row[0] if row else 0,
                 head=row[1] if row else GENESIS)

    issues = [j for j in jobs if isinstance(j, IssueJob)]
    steps = [j for j in jobs if isinstance(j, StepJob)]
    hw_rows = await _lookup(
        conn,
        "SELECT u.product, u.hardware_id, u.uci FROM json_each(?) AS j JOIN units AS u"
        " ON u.product = json_extract(j.value, '$[0]')"
        " AND u.hardware_id = json_extract(j.value, '$[1]')"
        " WHERE u.state <> 'voided'",
        sorted({(j.request.product, j.request.hardware_id) for j in issues
                if j.request.hardware_id}),
    )
    key_rows = await _lookup(
        conn,
        "SELECT key, fingerprint, ucis FROM idempotency"
        " WHERE key IN (SELECT value FROM json_each(?))",
        sorted({j.request.idempotency_key for j in issues if j.request.idempotency_key}),
    )
    state_rows = await _lookup(
        conn, "SELECT uci, state FROM units WHERE uci IN (SELECT value FROM json_each(?))",
        sorted({j.uci for j in steps}),
    )
    by_hardware: dict[tuple[str, str], str] = {(p, h): u for p, h, u in hw_rows}
    by_key: dict[str, tuple[str, list[str]]] = {k: (f, json.loads(u)) for k, f, u in key_rows}
    states: dict[str, str] = dict(state_rows)

    for job in jobs:
        if isinstance(job, IssueJob):
            plan.results.append((job, _plan_issue(plan, job.request, by_hardware, by_key,
                                                  states, new_ucis)))
        else:
            plan.results.append((job, _plan_step(plan, job, states)))

    if plan.units:
        await conn.executemany("INSERT INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?)", plan.units)
    if plan.updates:
        await conn.executemany(
            "UPDATE units SET state = ?, updated_at = ?, last_seq = ? WHERE uci = ?", plan.updates)
    if plan.keys:
        await conn.executemany("INSERT INTO idempotency VALUES (?, ?, ?, ?)", plan.keys)
    if plan.events:
        await conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               plan.events)
    await conn.execute("COMMIT")
    return plan


def _plan_issue(plan: _Plan, req: IssueRequest, by_hardware: dict[tuple[str, str], str],
                by_key: dict[str, tuple[str, list[str]]], states: dict[str, str],
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
            seq = plan.event(uci, "issued", req.actor, text)
            plan.units.append((uci, req.product, req.hardware_id, "issued", plan.station,
                               plan.at, plan.at, seq))
            states[uci] = "issued"
            ucis.append(uci)
        if hardware is not None:
            by_hardware[hardware] = ucis[0]
        created = True
    if key is not None:
        by_key[key] = (req.fingerprint, ucis)
        plan.keys.append((key, req.fingerprint, json.dumps(ucis), plan.at))
    return IssueResult(ucis=ucis, created=created)


def _plan_step(plan: _Plan, job: StepJob, states: dict[str, str]) -> JournalError | None:
    state = states.get(job.uci)
    if state is None:
        return UnitNotFound(job.uci)
    if state in job.refuse_from:
        return AlreadyVoided(job.uci) if state == "voided" else JournalError(
            f"unit {job.uci} is {state}; {job.kind} is not allowed now")
    seq = plan.event(job.uci, job.kind, job.actor, canonical_data(job.data))
    plan.updates.append((job.state, plan.at, seq, job.uci))
    states[job.uci] = job.state
    return None
