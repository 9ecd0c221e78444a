"""The writer's queue: which waiting jobs go in the next transaction.

Small jobs (a single UCI, a unit's step, a batch of at most SMALL_JOB) are what fixtures and
agents wait on; they go first, all that wait, in the order they came. Bulk work (a big batch)
fills the rest of the transaction, at most BULK_PART UCIs of it, oldest batch first: a batch of
10,000 is written in parts with the singles that came meanwhile in between, so a single waits
for at most one part's transaction before its own, never for a queue of big batches.
"""

from __future__ import annotations

from collections import deque

from factory.journal.jobs import AdminJob, IssueJob, Job

# Bounds a transaction, so that the requests queued behind it wait a bounded time: a 10,000
# batch in one transaction kept singles waiting 0.5 s (p50) under 20 bulk clients. 500 kept
# single p99 near 30 ms in-process on 2 shared cores; 1000 and 2000 about 100 ms
# (scripts/bench_issue.py --only fairness --fair-part N measures it over HTTP).
BULK_PART = 500
SMALL_JOB = 100
MAX_UNITS_PER_BATCH = 20_000  # small jobs in one transaction (a flood of singles)


class WriteQueue:
    """Jobs waiting for the writer: small ones and admin statements in one line, bulk in
    another."""

    def __init__(self) -> None:
        self._small: deque[Job | AdminJob] = deque()
        self._bulk: deque[IssueJob] = deque()
        self._bulk_last = False  # the last transaction carried bulk work

    def __bool__(self) -> bool:
        return bool(self._small or self._bulk)

    def push(self, job: Job | AdminJob) -> None:
        if isinstance(job, IssueJob) and job.size > SMALL_JOB:
            self._bulk.append(job)
        else:
            self._small.append(job)

    def take(self) -> AdminJob | list[Job]:
        """The next transaction's work: an admin statement alone, or the small jobs waiting
        (up to the next admin statement) and then up to BULK_PART UCIs of bulk work. Small
        jobs that waited for a bulk part go alone, so a single waits for at most one part;
        bulk work goes in every other transaction at least, however many singles come."""
        if self._small and isinstance(first := self._small[0], AdminJob):
            self._small.popleft()
            return first
        batch: list[Job] = []
        size = 0
        while self._small:
            job = self._small[0]
            if isinstance(job, AdminJob) or (batch and size + job.size > MAX_UNITS_PER_BATCH):
                break
            self._small.popleft()
            batch.append(job)
            size += job.size
        if batch and self._bulk_last:
            self._bulk_last = False
            return batch
        budget = BULK_PART
        self._bulk_last = bool(self._bulk)
        for big in self._bulk:
            if budget <= 0:
                break
            big.part = min(big.size, budget)
            budget -= big.part
            batch.append(big)
        return batch

    def settle(self) -> None:
        """Drop the bulk jobs that were answered (all parts written, or failed)."""
        while self._bulk and self._bulk[0].finished:
            self._bulk.popleft()
        if any(job.finished for job in self._bulk):  # rare: one answered out of order
            self._bulk = deque(job for job in self._bulk if not job.finished)
