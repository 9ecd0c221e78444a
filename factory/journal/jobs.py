"""The writer's jobs: what a request asks of the journal, checked when it is made.

Everything a job will hash and store is made canonical and checked here, in the caller's
task: a request the journal cannot store (text with a lone surrogate, data that is not JSON)
is refused at once with InvalidData, before it joins a batch other requests share.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from factory.journal.chain import checked_issue, checked_step
from factory.journal.errors import BatchInterrupted, JournalError, JournalUnavailable
from factory.journal.interface import OutboxRequest
from factory.journal.records import IssueRequest, IssueResult


@dataclass
class IssueJob:
    """Issue `request.count` UCIs. A big batch is written in parts (queue.py): `issued` holds
    the UCIs of the parts already durable, `part` how many the next transaction takes."""

    request: IssueRequest
    future: asyncio.Future[IssueResult]
    text: str  # the `issued` events' data, canonical JSON
    issued: list[str] = field(default_factory=list)
    part: int = 0  # 0: all that is left
    finished: bool = False  # answered (its future may be gone: the caller hung up)

    @property
    def size(self) -> int:
        """UCIs still to write."""
        return self.request.count - len(self.issued)


@dataclass
class StepJob:
    """Record a step of an existing unit (written, verified, failed, voided, …); with no
    UCI, an event of the station itself. `state` None keeps the unit's state."""

    uci: str
    kind: str
    state: str | None
    actor: str
    text: str  # the event's data, canonical JSON
    future: asyncio.Future[None]
    refuse_from: frozenset[str] = frozenset()
    size: int = 1
    enqueue: OutboxRequest | None = None  # a request for the upstream, queued with the step
    outbox_text: str = ""  # its JSON, canonical
    settles: tuple[int, str] | None = None  # (outbox entry, "done" or "failed") it answers
    finished: bool = False


Job = IssueJob | StepJob


@dataclass
class AdminJob:
    """A rare single statement (tokens): runs alone, never inside a batch."""

    sql: str
    args: tuple[Any, ...]
    future: asyncio.Future[int]
    size: int = 1


def issue_job(request: IssueRequest) -> IssueJob:
    """A job for `request`, its text checked (InvalidData if the journal cannot store it)."""
    return IssueJob(request, asyncio.get_running_loop().create_future(),
                    checked_issue(request))


def step_job(uci: str, kind: str, actor: str, data: dict[str, Any], state: str | None,
             *, refuse_from: frozenset[str] = frozenset(),
             enqueue: OutboxRequest | None = None,
             settles: tuple[int, str] | None = None) -> StepJob:
    """A job recording a step, its text checked (InvalidData if the journal cannot store it)."""
    text, outbox_text = checked_step(uci, kind, actor, data, state, enqueue)
    return StepJob(uci=uci, kind=kind, state=state, actor=actor, text=text,
                   future=asyncio.get_running_loop().create_future(), refuse_from=refuse_from,
                   enqueue=enqueue, outbox_text=outbox_text, settles=settles)


def answer(job: Job, outcome: Any) -> None:
    """Give a job its outcome (a result, or an exception), unless its caller has gone."""
    job.finished = True
    if job.future.done():
        return
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)


def fail_jobs(jobs: list[Job], error: JournalError) -> None:
    """Answer every job of a batch that was not written with the same error; a big batch
    whose first parts are on disk says so (they are issued, but no answer named them)."""
    for job in jobs:
        if isinstance(job, IssueJob) and job.issued:
            answer(job, BatchInterrupted(
                f"{error}; {len(job.issued)} of this batch's {job.request.count} UCIs were "
                "journaled before it stopped and stay issued but unused (no answer named "
                "them); send the request again for a whole batch"))
        else:
            answer(job, error)


Told = dict[asyncio.Future[Any], asyncio.Future[Any]]


def release(told: Told, batch: list[Job], error: JournalError | None = None) -> None:
    """Tell each job's caller (the future it awaits, `told[job.future]`) its outcome, once its
    batch is committed and anchored; `error` replaces a success the anchor could not vouch
    for."""
    for job in batch:
        done = job.future.done() and not job.future.cancelled()
        if not done and not job.finished:
            continue  # a big batch with parts still to write: told with its last part
        caller = told.pop(job.future, None)
        if caller is None or caller.done():
            continue
        if not done:  # not answered by the writer: never happens, but no caller may hang
            caller.set_exception(error or JournalUnavailable("journal write not answered"))
        elif (exc := job.future.exception()) is not None:
            caller.set_exception(exc)
        elif error is not None:
            caller.set_exception(error)
        else:
            caller.set_result(job.future.result())
