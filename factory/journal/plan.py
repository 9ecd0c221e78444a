"""A batch's rows, worked out in Python before any INSERT: the chain's new events, the unit
updates, idempotency keys and outbox rows, and what each job is answered. Both backends'
writers plan with it; each writes the rows its own way (SQLite makes unit rows from the
`issued` events by a trigger, PostgreSQL from `issued`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from factory import clock
from factory.journal.chain import event_hash
from factory.journal.errors import (
    AlreadyVoided,
    IdempotencyConflict,
    JournalError,
    OutboxSettled,
    UnitNotFound,
)
from factory.journal.jobs import IssueJob, Job, StepJob, answer
from factory.journal.records import IssueResult


def utc_now() -> str:
    """Journal time: UTC, milliseconds, ISO 8601 (from `factory.clock.now`, which tests step);
    the same text in both backends (it is hashed)."""
    return clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Part:
    """A big batch's part: these UCIs go to disk now, the job is answered after its last."""

    ucis: list[str]


class Unplannable(Exception):
    """A job broke its batch's planning (a value validation did not foresee): the batch is
    planned again without it."""

    def __init__(self, job: Job, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.job = job


@dataclass
class Plan:
    """The rows one batch will write."""

    station: str
    at: str
    seq: int
    head: str
    last_unit: int
    events: list[tuple[Any, ...]] = field(default_factory=list)
    issued: list[tuple[str, str, str | None, int]] = field(default_factory=list)  # new units
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


@dataclass
class Known:
    """What the batch's lookups found in the journal, updated as the batch is planned."""

    by_hardware: dict[tuple[str, str], str]
    by_key: dict[str, tuple[str, list[str]]]
    states: dict[str, tuple[int, str]]
    entries: dict[int, str]


def plan_jobs(plan: Plan, jobs: list[Job], known: Known,
              new_ucis: Callable[[int], list[str]]) -> None:
    """Plan every job in order; Unplannable names a job that raised."""
    for job in jobs:
        try:
            if isinstance(job, IssueJob):
                outcome: Any = plan_issue(plan, job, known, new_ucis)
            else:
                outcome = plan_step(plan, job, known)
        except Exception as exc:
            raise Unplannable(job, exc) from exc
        plan.results.append((job, outcome))


def plan_issue(plan: Plan, job: IssueJob, known: Known,
               new_ucis: Callable[[int], list[str]]) -> IssueResult | Part | JournalError:
    req = job.request
    key = req.idempotency_key
    if key is not None and key in known.by_key:
        fingerprint, ucis = known.by_key[key]
        if fingerprint != req.fingerprint:
            return IdempotencyConflict(key)
        return IssueResult(ucis=ucis, created=False)
    hardware = (req.product, req.hardware_id) if req.hardware_id else None
    if hardware is not None and hardware in known.by_hardware:
        ucis = [known.by_hardware[hardware]]
        created = False
    else:
        drawn = []
        # A UCI the fleet bound to this hardware at another station is bound here too.
        for uci in [req.uci] if req.uci else new_ucis(job.part or job.size):
            while uci in known.states and not req.uci:  # drawn twice in this batch: again
                uci = new_ucis(1)[0]
            plan.last_unit += 1
            seq = plan.event(plan.last_unit, uci, "issued", req.actor, job.text)
            plan.issued.append((uci, req.product, req.hardware_id, seq))
            known.states[uci] = (plan.last_unit, "issued")
            drawn.append(uci)
        if len(job.issued) + len(drawn) < req.count:
            # Not the last part: no key yet, so a retry never replays half a batch.
            return Part(drawn)
        ucis = [*job.issued, *drawn]
        if hardware is not None:
            known.by_hardware[hardware] = ucis[0]
        created = True
    if key is not None:
        known.by_key[key] = (req.fingerprint, ucis)
        plan.keys.append((key, req.fingerprint, json.dumps(ucis), plan.at))
    return IssueResult(ucis=ucis, created=created)


def plan_step(plan: Plan, job: StepJob, known: Known) -> JournalError | None:
    if job.settles is not None:
        entry, outcome = job.settles
        held = known.entries.get(entry, "pending")
        if outcome != "pending" and held != "pending":  # another worker answered it first
            return OutboxSettled(entry, held)
        known.entries[entry] = outcome
    if not job.uci:  # a station event (a fixture's failure before any UCI): unit 0
        plan.event(0, "", job.kind, job.actor, job.text)
        return None
    if job.uci not in known.states:
        return UnitNotFound(job.uci)
    unit_id, state = known.states[job.uci]
    if state in job.refuse_from:
        return AlreadyVoided(job.uci) if state == "voided" else JournalError(
            f"unit {job.uci} is {state}; {job.kind} is not allowed now")
    seq = plan.event(unit_id, job.uci, job.kind, job.actor, job.text)
    new_state = job.state or state
    plan.updates.append((new_state, plan.at, seq, unit_id, job.uci))
    known.states[job.uci] = (unit_id, new_state)
    if job.enqueue is not None:
        request = job.enqueue  # its key dedupes: INSERT OR IGNORE drops a second one
        plan.outbox.append((unit_id, job.uci, request.action, job.outbox_text, request.key,
                            plan.at))
    if job.settles is not None:
        entry, outcome = job.settles
        plan.outbox_settled.append((outcome, entry))
    return None


def answer_committed(plan: Plan) -> None:
    """Give each job of a committed batch its outcome; a big batch's part is durable now and
    its job waits for the next part."""
    for job, outcome in plan.results:
        if isinstance(outcome, Part):
            assert isinstance(job, IssueJob)
            job.issued.extend(outcome.ucis)
        else:
            answer(job, outcome)
