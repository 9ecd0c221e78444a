"""The SQLite journal's core: its connections, the one writer task and the writes.

WAL, synchronous=FULL, one writer connection, one reader connection. The reads of each
concern (units, outbox, tokens, status, audit) are mixins over this core.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from factory.journal.anchor import AnchorFile, Mark, advance_after_commit
from factory.journal.errors import JournalError, JournalUnavailable
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
from factory.journal.queue import WriteQueue
from factory.journal.records import IssueRequest, IssueResult
from factory.journal.sqlite.checks import chain_head, hash_at
from factory.journal.sqlite.writer import BatchWriter, run_admin

log = logging.getLogger("factory.journal")

# How often the writer looks whether the journal's files were deleted or replaced under it.
FILE_CHECK_SECONDS = 1.0


def file_ids(path: Path) -> dict[Path, tuple[int, int]]:
    """(device, inode) of the journal and its -wal and -shm files, those that exist."""
    ids = {}
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = os.stat(file)
        except FileNotFoundError:
            continue
        ids[file] = (st.st_dev, st.st_ino)
    return ids


class Core:
    """Append-only event journal with derived unit state: connections and writes."""

    def __init__(self, path: Path, station: str, writer: aiosqlite.Connection,
                 reader: aiosqlite.Connection,
                 new_ucis: Callable[[int], list[str]], *, anchor: AnchorFile | None = None,
                 anchored: Mark | None = None, hold: str = "",
                 serve_lock: int | None = None) -> None:
        self.path, self.station = path, station
        self._anchor, self._anchored, self._hold = anchor, anchored, hold
        self._serve_lock = serve_lock
        # Why the station must stop writing (its files replaced, its chain split from the
        # anchor's): unlike a full disk, only a restart clears it.
        self._broken = ""
        self._anchor_failure = ""
        self._files = file_ids(path)
        self._files_checked = time.monotonic()
        self._told: Told = {}
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
        return self._broken or self._batches.failure or self._anchor_failure

    @property
    def hold(self) -> str:
        """Why the journal refuses to issue or record until a person acts (its newest events
        lost, or it is not the journal its anchor recorded), or "" if it does not."""
        return self._hold

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
            if self._anchor is not None:
                self._anchor.close()
            if self._serve_lock is not None:
                os.close(self._serve_lock)

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

    async def accept_loss(self, actor: str) -> dict[str, Any]:
        """A person accepts what the hold names: journal `loss_accepted` with it, anchor the
        journal where it is now, and take work again. Returns the event's data."""
        if not self._hold or self._anchor is None:
            raise JournalError("the journal is not held: there is no loss to accept")
        data: dict[str, Any] = {"problem": self._hold.split("; ")[0],
                                "anchor": str(self._anchor.path)}
        job = step_job("", "loss_accepted", actor, data, None)
        await self._submit(job, job.future, despite_hold=True)
        head = await chain_head(self._writer_conn)
        self._anchored = await asyncio.to_thread(self._anchor.reset, head)
        log.warning("journal %s: %s accepted the loss (%s); anchored again at event %d",
                    self.path, actor, data["problem"], head.seq)
        self._hold = ""
        return data

    async def _submit(self, job: Job | AdminJob, fut: asyncio.Future[Any], *,
                      despite_hold: bool = False) -> Any:
        if self._closing:
            raise JournalUnavailable("the journal is closing; try again after restart")
        if self._hold and not despite_hold and not isinstance(job, AdminJob):
            raise JournalUnavailable(f"the journal is held: {self._hold}")
        # The caller is told only once the anchor is written after the commit (jobs.release).
        told = fut if isinstance(job, AdminJob) else asyncio.get_running_loop().create_future()
        if told is not fut:
            self._told[fut] = told
        self._pending.push(job)
        self._wakeup.set()
        # A caller cancelled now (its client hung up) does not stop the write: the job is
        # queued and goes to disk with its batch, so nothing half-done is left behind.
        return await told

    def _refusal(self) -> str:
        """Why no batch may be written now: the journal's files were replaced under it."""
        now = time.monotonic()
        if not self._broken and now - self._files_checked >= FILE_CHECK_SECONDS:
            self._files_checked = now
            seen = file_ids(self.path)
            for file, ident in self._files.items():
                if seen.get(file) != ident:
                    what = "deleted" if file not in seen else "deleted or replaced"
                    self._broken = (
                        f"{file} was {what} while the station ran: what is written now may be "
                        "lost; stop the station (nothing more is written), then start it and "
                        "run `factory journal verify`")
                    log.error("journal: %s", self._broken)
        return self._broken

    async def _anchor_commit(self) -> JournalError | None:
        """Record the new chain head in the anchor, synced, before any caller is told; the
        error for the callers if this journal split from the one the anchor follows."""
        if self._anchor is None or self._hold or self._broken:
            return None
        try:
            head = await chain_head(self._writer_conn)
            if head.same_point(self._anchored):
                return None

            async def in_chain(held: Mark) -> bool:
                return await hash_at(self._writer_conn, held.seq) == held.hash

            self._anchored, why = await advance_after_commit(self._anchor, head,
                                                             self._anchored, in_chain)
        except (OSError, ValueError, sqlite3.Error) as exc:
            self._anchor_failure = f"the anchor {self._anchor.path} cannot be written: {exc}"
            log.error("journal: %s", self._anchor_failure)
            return None
        if not why:
            self._anchor_failure = ""
            return None
        if why == "moving":  # not split: the callers may ask again
            return JournalUnavailable(f"the anchor {self._anchor.path} kept moving under "
                                      "another process's writes; send the request again")
        self._broken = (
            f"this station's journal no longer holds the head another process anchored "
            f"({self._anchor.path}): the journal's -wal or -shm file was probably deleted or "
            "replaced under it; stop the station, start it again and run `factory journal "
            "verify`")
        log.error("journal: %s", self._broken)
        return JournalUnavailable(f"journal write may be lost: {self._broken}")

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                work = self._pending.take()
                if isinstance(work, AdminJob):
                    await run_admin(self._writer_conn, work)
                    continue
                if (refusal := self._refusal()):
                    fail_jobs(work, JournalUnavailable(f"journal write refused: {refusal}"))
                    release(self._told, work)
                    self._pending.settle()
                    continue
                try:
                    await self._batches.write(work)
                except Exception as exc:  # the writer must outlive any one batch
                    log.exception("journal writer failed a batch")
                    fail_jobs(work, JournalUnavailable(f"journal write failed: {exc}"))
                release(self._told, work, await self._anchor_commit())
                self._pending.settle()
            self._changed()  # once per round: a burst of writes is one notification
            if self._closing:
                return
