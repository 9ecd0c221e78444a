"""The PostgreSQL journal's core: its connections, the one writer task and the writes.

One writer connection per station process (group commit: a batch is one transaction), one
reader connection in autocommit, snapshots on connections of their own. Every connection runs
with synchronous_commit on, whatever the server's default: a COMMIT returns once the WAL is
flushed, so an answer is never ahead of the disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from factory.journal.errors import JournalError, JournalUnavailable
from factory.journal.interface import OutboxRequest
from factory.journal.jobs import AdminJob, Job, fail_jobs, issue_job, step_job
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


class Core:
    """Append-only event journal of one station in a shared database: connections, writes."""

    def __init__(self, url: str, station: str, reader: psycopg.AsyncConnection[Any],
                 new_ucis: Callable[[int], list[str]]) -> None:
        self.url, self.station = url, station
        self.path = redact(url)  # what messages name
        self._reader = reader
        self._reader_lock = asyncio.Lock()
        self._batches = BatchWriter(lambda: connect(url), station, new_ucis)
        self._pending = WriteQueue()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._listeners: list[Callable[[], None]] = []
        self._task = asyncio.create_task(self._write_loop(), name="journal-writer")

    @property
    def writing(self) -> bool:
        return not self._task.done()

    @property
    def write_failure(self) -> str:
        return self._batches.failure

    @property
    def hold(self) -> str:
        # The database keeps its own durability; see README (PostgreSQL journal: no anchor).
        return ""

    @property
    def commits(self) -> int:
        return self._batches.commits

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        self._closing = True
        self._wakeup.set()
        try:
            await self._task
        finally:
            await self._reader.close()
            await self._batches.close()

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
        raise JournalError("the journal is not held: there is no loss to accept")

    async def _submit(self, job: Job | AdminJob, fut: asyncio.Future[Any]) -> Any:
        if self._closing:
            raise JournalUnavailable("the journal is closing; try again after restart")
        self._pending.push(job)
        self._wakeup.set()
        # shield: a caller cancelled now does not stop the write (it goes with its batch).
        return await asyncio.shield(fut)

    async def _write_loop(self) -> None:
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
                self._pending.settle()
            self._changed()
            if self._closing:
                return
