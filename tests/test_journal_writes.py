"""The journal's writer under hostile and heavy work: one request never fails another (a job
that cannot be written fails alone), singles are not held up behind bulk batches, and a
second process writing the same file is taken in its stride.

Every test runs on every backend (both writers plan with journal/plan.py and queue with
journal/queue.py); only a collision that persists is SQLite's own (its write lock)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import psycopg
import pytest

from factory.config import StationConfig
from factory.journal import open_journal, plan, queue
from factory.journal.errors import BatchInterrupted, InvalidData, JournalError
from factory.journal.interface import Journal
from factory.journal.records import IssueRequest
from factory.journal.sqlite import writer
from tests.conftest import PRODUCT, OpenJournal


def req(**kw: Any) -> IssueRequest:
    return IssueRequest(**{"product": PRODUCT, "actor": "test", **kw})


async def test_a_lone_surrogate_is_refused_when_the_job_is_made(journal: Journal) -> None:
    uci = (await journal.issue(req())).ucis[0]
    with pytest.raises(InvalidData) as caught:
        await journal.void(uci, "bad \udc80 unit", "test")
    assert caught.value.field == "reason"
    assert str(caught.value) == r"reason: contains a lone surrogate (\udc80); send valid Unicode"
    with pytest.raises(InvalidData, match=r"^data\.nested\[1\]: contains a lone surrogate"):
        await journal.record(uci, "tested", "test", {"data": {"nested": ["ok", "\ud800"]}})
    with pytest.raises(InvalidData, match=r"^actor: "):
        await journal.issue(req(actor="dev\udcff"))
    assert (await journal.unit(uci)).state == "issued"
    assert (await journal.verify()).ok


async def test_a_job_that_fails_while_planned_fails_alone(
        journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation cannot foresee everything: a job that still breaks the planning of its batch
    is taken out, and its batch-mates are written without it."""
    real = plan.event_hash

    def event_hash(prev: str, seq: int, uci: str, kind: str, *rest: str) -> str:
        if kind == "poison":
            raise ValueError("this event cannot be hashed")
        return real(prev, seq, uci, kind, *rest)

    monkeypatch.setattr(plan, "event_hash", event_hash)
    issues = [journal.issue(req()) for _ in range(20)]
    results = await asyncio.gather(*issues[:10], journal.note("poison", "test", {}),
                                   *issues[10:], return_exceptions=True)
    poison = results.pop(10)
    assert isinstance(poison, InvalidData), poison
    assert all(not isinstance(r, BaseException) for r in results), results
    assert journal.commits <= 3  # they were one batch (or few), not written one by one
    assert (await journal.verify()).checked == 20


async def test_a_job_that_fails_while_written_fails_alone(journal: Journal) -> None:
    """A value the database cannot store (an outbox entry id past 64 bits) breaks the
    INSERTs, not the planning: the batch is split until the one job that fails is alone."""
    ucis = (await journal.issue(req(count=30))).ucis
    steps = [journal.record(u, "tested", "test", {"n": i}) for i, u in enumerate(ucis)]
    bad = journal.record(ucis[0], "tested", "test", {}, settles=(2**70, "done"))
    results = await asyncio.gather(*steps[:15], bad, *steps[15:], return_exceptions=True)
    failed = results.pop(15)
    assert isinstance(failed, JournalError), failed
    assert all(r is None for r in results), results
    assert (await journal.verify()).checked == 60
    # The writer is fine afterwards.
    assert len((await journal.issue(req(count=3))).ucis) == 3


async def test_an_admin_statement_that_cannot_be_stored_does_not_stop_the_writer(
        journal: Journal) -> None:
    # It once killed the writer task: every later write waited for good.
    async with asyncio.timeout(10):
        with pytest.raises(UnicodeEncodeError, match="surrogate"):
            await journal.add_token("bad\udc80", "device", "hash")
        assert journal.writing
        assert len((await journal.issue(req(count=2))).ucis) == 2


async def test_a_single_is_not_held_up_behind_a_big_batch(journal: Journal) -> None:
    """A single queued while a 10,000-UCI batch is written commits before the batch's last
    part: bulk work goes in bounded parts with the waiting singles in between."""
    big = asyncio.create_task(journal.issue(req(count=10_000)))
    await asyncio.sleep(0)  # the batch is queued first
    singles = await asyncio.gather(*(journal.issue(req()) for _ in range(5)))
    result = await big
    seqs = {e.uci: e.seq async for e in journal.events()}
    last_of_batch = max(seqs[u] for u in result.ucis)
    assert all(seqs[s.ucis[0]] < last_of_batch for s in singles)
    assert len(set(result.ucis)) == 10_000 and result.created
    assert journal.commits > 3  # written in parts


async def test_a_replayed_big_batch_gets_the_whole_batch(journal: Journal) -> None:
    """An Idempotency-Key on a batch written in parts is stored with the last part: a retry,
    even one sent while the first is still being written, replays the whole answer."""
    first_task = asyncio.create_task(journal.issue(req(count=5000, idempotency_key="k",
                                                       fingerprint="f")))
    await asyncio.sleep(0)
    again_task = asyncio.create_task(journal.issue(req(count=5000, idempotency_key="k",
                                                       fingerprint="f")))
    first, again = await first_task, await again_task
    assert first.created and not again.created and again.ucis == first.ucis
    assert (await journal.stats()) == {"issued": 5000}


async def test_two_journals_on_one_file_both_write(open_test_journal: OpenJournal,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Another process (the CLI's `factory issue`) appending to the same file while the
    station writes big batches back to back: the other writer waits for the write lock, and
    by then its head is stale. Every write succeeds, the chain holds, no UCI twice, and the
    collisions leave nothing in the operators' log from the driver (psycopg's "error ignored
    terminating pipeline")."""
    station, cli = await open_test_journal(), await open_test_journal()
    try:
        async def bulk() -> list[str]:
            results = await asyncio.gather(*(station.issue(req(count=3000)) for _ in range(8)))
            return [u for r in results for u in r.ucis]

        async def singles(done: asyncio.Task[list[str]]) -> list[str]:
            got: list[str] = []
            while not done.done() or not got:
                results = await asyncio.gather(*(cli.issue(req()) for _ in range(5)))
                got += [u for r in results for u in r.ucis]
                await cli.void(got[-1], "scrap", "test")
            return got

        big = asyncio.create_task(bulk())
        small = await singles(big)
        ucis = [*await big, *small]
        assert len(ucis) == len(set(ucis)) == 24_000 + len(small)
        result = await station.verify()
        assert result.ok and result.checked == len(ucis) + len(small) // 5, result
        assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []
    finally:
        await station.close()
        await cli.close()


async def test_a_collision_that_persists_names_the_other_writer(
        config: StationConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    j = await open_journal(config.journal, config.station_id)
    try:
        await j.issue(req())
        monkeypatch.setattr(writer, "COLLISION_RETRIES", 1)

        def collide(*args: object) -> None:
            raise sqlite3.IntegrityError("UNIQUE constraint failed: events.seq")

        monkeypatch.setattr(writer.failpoints, "hit", collide)
        with pytest.raises(JournalError) as caught:
            await j.issue(req())
        assert str(caught.value) == "another process is writing the journal; try again"
    finally:
        monkeypatch.undo()
        await j.close()


async def test_a_batch_cut_off_between_parts_is_never_half_answered(
        journal: Journal, journal_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write failing after a big batch's first parts are on disk: the caller gets no UCIs
    and is told how many were stored; its Idempotency-Key was not stored (it goes with the
    last part), so the retry gets a whole batch, never a replay of half of one."""
    real = writer.failpoints.hit
    commits = 0

    def hit(name: str) -> None:
        nonlocal commits
        if name == "journal.commit":
            commits += 1
            if commits == 3:
                raise (sqlite3.OperationalError("disk I/O error") if journal_backend == "sqlite"
                       else psycopg.OperationalError("server closed the connection"))
        real(name)

    monkeypatch.setattr(writer.failpoints, "hit", hit)
    count = 6 * queue.BULK_PART
    with pytest.raises(BatchInterrupted) as caught:
        await journal.issue(req(count=count, idempotency_key="k", fingerprint="f"))
    stored = 2 * queue.BULK_PART
    assert f"{stored} of this batch's {count} UCIs were journaled" in str(caught.value)
    again = await journal.issue(req(count=count, idempotency_key="k", fingerprint="f"))
    assert again.created and len(set(again.ucis)) == count
    replay = await journal.issue(req(count=count, idempotency_key="k", fingerprint="f"))
    assert replay.ucis == again.ucis and not replay.created
    assert (await journal.stats()) == {"issued": stored + count}
    assert (await journal.verify()).ok
