"""The SQLite journal's core: its connections, the one writer task and the writes.

WAL, synchronous=FULL, one writer connection, one reader connection. The reads of each
concern (units, outbox, tokens, status, audit) are mixins over this core.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from factory.journal.errors import JournalUnavailable
from factory.journal.interface import OutboxRequest
from factory.journal.records import IssueRequest, IssueResult
from factory.journal.sqlite.jobs import AdminJob, Job, fail_jobs, issue_job, step_job
from factory.journal.sqlite.queue import WriteQueue
from factory.journal.sqlite.writer import BatchWriter, run_admin

log = logging.getLogger("factory.journal")


class Core:
    """Append-only event journal with derived unit state: connections and writes."""

    def __init__(self, path: Path, station: str, writer: aiosqlite.Connection,
                 reader: aiosqlite.Connection,
                 new_ucis: Callable[[int], list[str]]) -> None:
        self.path, self.station = path, station
        self._writer_conn, self._reader = writer, reader
        self._batches = BatchWriter(writer, station, new_ucis)
        self._pending = WriteQueue()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._listeners: list[Callable[[], None]] = []
        self._side: aiosqlite.Connection | None = None  # the status page's reader
        self._side_lock = asyncio.Lock()
        self._task = asyncio.create_task(self._write_loop(), name="journal-writer")

    @property
    def writing(self) -> bool:
        """Whether the writer task is alive (the station's watchdog asks)."""
        return not self._task.done()

    @property
    def write_failure(self) -> str:
        """Why the newest write failed (disk full, I/O error), or "" if it did not: new work
        is refused until a write succeeds again."""
        return self._batches.failure

    @property
    def commits(self) -> int:
        """Transactions written; group commit keeps this far below the requests served."""
        return self._batches.commits

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
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
        """Issue UCIs; returns once they are durable in the journal (all of a big batch,
        which is written in parts)."""
        job = issue_job(request)  # InvalidData now, not in a batch, if it cannot be stored
        return await self._submit(job, job.future)

    async def void(self, uci: str, reason: str, actor: str) -> None:
        """Mark a unit voided; its UCI stays taken forever."""
        await self.record(uci, "voided", actor, {"reason": reason}, state="voided")

    async def record(self, uci: str, kind: str, actor: str, data: dict[str, Any],
                     state: str | None = None, *, enqueue: OutboxRequest | None = None,
                     settles: tuple[int, str] | None = None) -> None:
        """Journal one step of a unit (durable on return); a voided unit takes no steps.

        `enqueue` puts a request for the upstream in the outbox and `settles` (entry,
        "done" | "failed") closes one, both in the step's transaction.
        """
        job = step_job(uci, kind, actor, data, state, refuse_from=frozenset({"voided"}),
                       enqueue=enqueue, settles=settles)  # InvalidData now if it cannot be stored
        await self._submit(job, job.future)

    async def note(self, kind: str, actor: str, data: dict[str, Any]) -> None:
        """Journal an event of the station itself (no unit), e.g. a fixture's failure before
        the unit had a UCI."""
        await self.record("", kind, actor, data)

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

    async def _admin(self, sql: str, args: tuple[Any, ...]) -> int:
        """Run one rare statement (tokens, outbox bookkeeping) alone on the writer."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        return int(await self._submit(AdminJob(sql, args, fut), fut))

    async def _submit(self, job: Job | AdminJob, fut: asyncio.Future[Any]) -> Any:
        if self._closing:
            raise JournalUnavailable("the journal is closing; try again after restart")
        self._pending.push(job)
        self._wakeup.set()
        # A caller cancelled now (its client hung up) does not stop the write: the job is
        # queued and goes to disk with its batch, so nothing half-done is left behind.
        return await fut

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                work = self._pending.take()
                if isinstance(work, AdminJob):
                    await run_admin(self._writer_conn, work)
                    continue
                try:
                    await self._batches.write(work)
                except Exception as exc:  # the writer must outlive any one batch
                    log.exception("journal writer failed a batch")
                    fail_jobs(work, JournalUnavailable(f"journal write failed: {exc}"))
                self._pending.settle()
            self._changed()  # once per round: a burst of writes is one notification
            if self._closing:
                return
