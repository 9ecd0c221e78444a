"""The PostgreSQL journal's core: its connections, the one writer task and the writes.

One writer connection per station process (group commit: a batch is one transaction), one
reader connection in autocommit, snapshots on connections of their own. A batch's callers are
told once it is committed and the station's anchor holds its head (synced): the anchor loop
syncs the anchor while the writer already sends the next batch, and one sync covers every
batch committed meanwhile (a batch waits for the PostgreSQL commit, then the anchor, as the
SQLite journal's do, but the next batch need not wait for the anchor). Every connection runs
with synchronous_commit on, whatever the server's default: a COMMIT returns once the WAL is
flushed, so an answer is never ahead of the disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from factory.journal.anchor import AnchorFile, Mark, advance_after_commit
from factory.journal.chain import GENESIS
from factory.journal.errors import InvalidData, JournalError, JournalUnavailable
from factory.journal.interface import OutboxRequest
from factory.journal.jobs import (
    AdminJob,
    Job,
    Told,
    fail_jobs,
    issue_job,
    release,
    step_job,
)
from factory.journal.plan import utc_now
from factory.journal.postgres.writer import BatchWriter
from factory.journal.queue import WriteQueue
from factory.journal.records import IssueRequest, IssueResult

log = logging.getLogger("factory.journal")
CONNECT_TIMEOUT = 10


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


async def connect(url: str, *, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
    """A connection with the journal's settings; JournalUnavailable if the server won't."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT,
            application_name="factory-station")
        await conn.execute("SET synchronous_commit = on")
        if not autocommit:
            await conn.commit()
    except psycopg.Error as exc:
        raise JournalUnavailable(
            f"cannot open the PostgreSQL journal {redact(url)}: {str(exc).strip()}; check "
            "[station] journal and that the server is up") from exc
    return conn


Read = Callable[[str, Any], Awaitable[list[Any]]]


async def head_mark(read: Read, station: str) -> Mark:
    """The station's newest event's seq and hash (seq 0 and genesis for none)."""
    rows = await read("SELECT seq, hash FROM events WHERE station = %s ORDER BY seq DESC"
                      " LIMIT 1", (station,))
    return Mark(int(rows[0][0]), str(rows[0][1]), at=utc_now()) if rows else Mark(
        0, GENESIS, at=utc_now())


async def hash_at(read: Read, station: str, seq: int) -> str | None:
    """The hash of the station's event `seq`, None if the database has none."""
    if seq == 0:
        return GENESIS
    rows = await read("SELECT hash FROM events WHERE station = %s AND seq = %s", (station, seq))
    return str(rows[0][0]) if rows else None


class Core:
    """Append-only event journal of one station in a shared database: connections, writes."""

    def __init__(self, url: str, station: str, reader: psycopg.AsyncConnection[Any],
                 new_ucis: Callable[[int], list[str]], *, anchor: AnchorFile | None = None,
                 anchored: Mark | None = None, hold: str = "") -> None:
        self.url, self.station = url, station
        self.path = redact(url)  # what messages name
        self._reader = reader
        self._reader_lock = asyncio.Lock()
        # The station's local anchor (its chain head, as the SQLite journal keeps one): a
        # database restored from an old backup is caught at start, not shipped or built on.
        self._anchor, self._anchored, self._hold = anchor, anchored, hold
        self._anchor_failure = ""
        self._batches = BatchWriter(lambda: connect(url), station, new_ucis)
        self._pending = WriteQueue()
        self._told: Told = {}  # each job's future -> the one its caller awaits
        # Batches written, their callers not told yet, each with the head committed by then.
        self._unanchored: deque[tuple[list[Job], tuple[int, str] | None]] = deque()
        self._anchor_wakeup = asyncio.Event()
        self._written = False  # the write loop has ended
        self._wakeup = asyncio.Event()
        self._closing = False
        self._listeners: list[Callable[[], None]] = []
        self._task = asyncio.create_task(self._write_loop(), name="journal-writer")
        self._anchor_task = asyncio.create_task(self._anchor_loop(), name="journal-anchor")

    @property
    def writing(self) -> bool:
        return not self._task.done() and not self._anchor_task.done()

    @property
    def write_failure(self) -> str:
        return self._batches.failure or self._anchor_failure

    @property
    def hold(self) -> str:
        """Why the journal refuses to issue or record until a person acts (the database is
        behind or beside this station's anchor), or ""."""
        return self._hold

    @property
    def commits(self) -> int:
        return self._batches.commits

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        self._closing = True
        self._wakeup.set()
        try:
            await self._task
            await self._anchor_task
        finally:
            await self._reader.close()
            await self._batches.close()
            if self._anchor is not None:
                self._anchor.close()

    async def _read(self, sql: str, args: Any = ()) -> list[Any]:
        """Rows of one query on the reader (one query at a time on its connection)."""
        async with self._reader_lock:
            try:
                if self._reader.closed or self._reader.broken:
                    self._reader = await connect(self.url, autocommit=True)
                return await (await self._reader.execute(sql, args)).fetchall()
            except psycopg.OperationalError as exc:
                raise JournalUnavailable(
                    f"journal {self.path} does not answer: {str(exc).strip()}") from exc

    # -- writes -----------------------------------------------------------------------------

    async def issue(self, request: IssueRequest) -> IssueResult:
        job = issue_job(request)  # InvalidData now, not in a batch, if it cannot be stored
        if request.uci:  # mode 1 binds hardware ids across stations itself (a unique index)
            raise InvalidData("uci", "a shared PostgreSQL journal draws its own UCIs; binding "
                                     "a fleet center's UCI is for a station on SQLite")
        return await self._submit(job, job.future)

    async def void(self, uci: str, reason: str, actor: str) -> None:
        await self.record(uci, "voided", actor, {"reason": reason}, state="voided")

    async def record(self, uci: str, kind: str, actor: str, data: dict[str, Any],
                     state: str | None = None, *, enqueue: OutboxRequest | None = None,
                     settles: tuple[int, str] | None = None) -> None:
        job = step_job(uci, kind, actor, data, state, refuse_from=frozenset({"voided"}),
                       enqueue=enqueue, settles=settles)  # InvalidData now if it cannot be stored
        await self._submit(job, job.future)

    async def note(self, kind: str, actor: str, data: dict[str, Any]) -> None:
        await self.record("", kind, actor, data)

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not stop the writer
                log.exception("journal change listener failed")

    async def _admin(self, sql: str, args: tuple[Any, ...]) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        return int(await self._submit(AdminJob(sql, args, fut), fut))

    async def accept_loss(self, actor: str) -> dict[str, Any]:
        """A person accepts what the hold names: journal `loss_accepted`, anchor the station
        where its chain is now, and take work again. Returns the event's data."""
        if not self._hold or self._anchor is None:
            raise JournalError("the journal is not held: there is no loss to accept")
        data: dict[str, Any] = {"problem": self._hold.split("; ")[0],
                                "anchor": str(self._anchor.path)}
        job = step_job("", "loss_accepted", actor, data, None)
        await self._submit(job, job.future, despite_hold=True)
        self._anchored = await asyncio.to_thread(self._anchor.reset, await self._head())
        log.warning("journal %s: %s accepted the loss (%s); anchored again at event %d",
                    self.path, actor, data["problem"], self._anchored.seq)
        self._hold = ""
        return data

    async def _head(self) -> Mark:
        """This station's newest event in the database (seq 0 and genesis if none)."""
        return await head_mark(self._read, self.station)

    async def _anchor_commit(self, seq: int, digest: str) -> None:
        """Record the new chain head in the anchor, synced, before any caller is told."""
        if self._anchor is None or self._hold or (
                self._anchored is not None and self._anchored.seq >= seq):
            return
        head = Mark(seq, digest, at=utc_now())

        async def in_chain(held: Mark) -> bool:
            return await hash_at(self._read, self.station, held.seq) == held.hash

        try:
            self._anchored, why = await advance_after_commit(self._anchor, head,
                                                             self._anchored, in_chain)
        except (OSError, ValueError, JournalError) as exc:
            self._anchor_failure = f"the anchor {self._anchor.path} cannot be written: {exc}"
            log.error("journal: %s", self._anchor_failure)
            return
        if not why:
            self._anchor_failure = ""
            return
        self._anchor_failure = (
            f"the anchor {self._anchor.path} kept moving under another process's writes"
            if why == "moving" else
            f"the anchor {self._anchor.path} holds a head this station's chain in the "
            "database does not: stop the station, start it again and run `factory journal "
            "verify`")
        log.error("journal: %s", self._anchor_failure)

    async def _submit(self, job: Job | AdminJob, fut: asyncio.Future[Any], *,
                      despite_hold: bool = False) -> Any:
        if self._closing:
            raise JournalUnavailable("the journal is closing; try again after restart")
        if self._hold and not despite_hold and not isinstance(job, AdminJob):
            raise JournalUnavailable(f"the journal is held: {self._hold}")
        # The caller is told once the batch is committed and anchored (`_anchor_loop`).
        told = fut if isinstance(job, AdminJob) else asyncio.get_running_loop().create_future()
        if told is not fut:
            self._told[fut] = told
        self._pending.push(job)
        self._wakeup.set()
        # A caller cancelled now (its client hung up) does not stop the write: the job is
        # queued and goes with its batch.
        return await (asyncio.shield(fut) if told is fut else told)

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending:
                    work = self._pending.take()
                    if isinstance(work, AdminJob):
                        await self._batches.admin(work)
                        continue
                    try:
                        await self._batches.write(work)
                    except Exception as exc:  # the writer must outlive any one batch
                        log.exception("journal writer failed a batch")
                        fail_jobs(work, JournalUnavailable(f"journal write failed: {exc}"))
                    self._unanchored.append((work, self._batches.committed))
                    self._anchor_wakeup.set()
                    self._pending.settle()
                if self._closing:
                    return
        finally:
            self._written = True
            self._anchor_wakeup.set()

    async def _anchor_loop(self) -> None:
        """Tell the callers of each written batch once the anchor holds the head committed
        when it was written (heads only grow, so the newest waiting covers them all)."""
        while True:
            await self._anchor_wakeup.wait()
            self._anchor_wakeup.clear()
            while self._unanchored:
                batches = list(self._unanchored)
                self._unanchored.clear()
                head = batches[-1][1]
                if head is not None:
                    try:
                        await self._anchor_commit(*head)
                    except Exception:  # no caller may hang on the anchor's bug
                        log.exception("journal anchor failed")
                for work, _ in batches:
                    release(self._told, work)
            self._changed()  # once per round: a burst of writes is one notification
            if self._written and not self._unanchored:
                return
