"""The journal: group commit, uniqueness, idempotency, the hash chain, on every backend
(`journal`, `open_test_journal`); durable settings and tampering with the file, on SQLite
(`sqlite_journal` and the file itself)."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.config import StationConfig
from factory.journal import open_journal
from factory.journal.errors import AlreadyVoided, IdempotencyConflict, UnitNotFound
from factory.journal.interface import Journal
from factory.journal.records import Event, IssueRequest
from factory.journal.sqlite import SQLiteJournal
from factory.journal.sqlite.migrations import MIGRATIONS
from factory.journal.waiting import wait_for
from factory.uci import new_uci
from factory.upstream.requests import PreclaimRequest, RegisterRequest, read_request
from tests.conftest import PRODUCT, OpenJournal, run_cli


def req(**kw: object) -> IssueRequest:
    base: dict[str, object] = {"product": PRODUCT, "actor": "test"}
    base.update(kw)
    return IssueRequest(**base)  # type: ignore[arg-type]


async def test_file_is_private_and_durable(config: StationConfig,
                                          sqlite_journal: SQLiteJournal) -> None:
    await sqlite_journal.issue(req())
    for path in config.journal.parent.glob("journal.sqlite*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    with sqlite3.connect(config.journal) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = [r[0] for r in db.execute("SELECT name FROM schema_migrations")]
        assert names == [name for name, _ in MIGRATIONS]
    assert (config.journal.parent / "journal.sqlite-wal").exists()


async def test_synchronous_full_on_both_connections(sqlite_journal: SQLiteJournal) -> None:
    for conn in (sqlite_journal._writer_conn, sqlite_journal._reader):
        async with conn.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone()) == (2,)  # FULL


async def test_reopen_keeps_everything(open_test_journal: OpenJournal) -> None:
    j = await open_test_journal()
    first = await j.issue(req(count=5))
    await j.close()
    j = await open_test_journal()
    try:
        units, _ = await j.units(limit=10)
        assert sorted(u.uci for u in units) == sorted(first.ucis)
        assert (await j.verify()).ok
    finally:
        await j.close()


async def test_concurrent_requests_share_commits(journal: Journal) -> None:
    results = await asyncio.gather(*(journal.issue(req()) for _ in range(300)))
    ucis = [r.ucis[0] for r in results]
    assert len(set(ucis)) == 300
    # Group commit: 300 acknowledged issues, far fewer transactions.
    assert journal.commits < 30, journal.commits
    assert (await journal.verify()).checked == 300


async def test_hardware_id_race_gives_one_uci(journal: Journal) -> None:
    results = await asyncio.gather(*(journal.issue(req(hardware_id="AABBCCDDEEFF"))
                                     for _ in range(50)))
    assert len({r.ucis[0] for r in results}) == 1
    assert sum(r.created for r in results) == 1
    # Another product with the same hardware is another unit.
    other = await journal.issue(req(product="other", hardware_id="AABBCCDDEEFF"))
    assert other.created and other.ucis != results[0].ucis


async def test_idempotency_key_replays_a_batch(journal: Journal) -> None:
    first = await journal.issue(req(count=20, idempotency_key="k1", fingerprint="f"))
    again = await journal.issue(req(count=20, idempotency_key="k1", fingerprint="f"))
    assert again.ucis == first.ucis and first.created and not again.created
    with pytest.raises(IdempotencyConflict):
        await journal.issue(req(count=21, idempotency_key="k1", fingerprint="g"))
    stats = await journal.stats()
    assert stats == {"issued": 20}


async def test_uniqueness_is_enforced_by_the_journal(open_test_journal: OpenJournal) -> None:
    """A generator that repeats itself cannot make the journal issue a UCI twice."""
    fixed = new_uci()
    draws: Iterator[str] = itertools.chain([fixed, fixed, fixed], iter(new_uci, None))
    j = await open_test_journal(new_ucis=lambda n: [next(draws) for _ in range(n)])
    try:
        a = await j.issue(req())
        b = await j.issue(req())  # draws the same UCI, hits the unique index, draws again
        c = await j.issue(req(count=3))
        assert a.ucis == [fixed]
        assert b.ucis != [fixed]
        assert len({*a.ucis, *b.ucis, *c.ucis}) == 5
    finally:
        await j.close()


async def test_the_sqlite_file_refuses_a_uci_twice(config: StationConfig) -> None:
    """The unique index holds against any writer of the file, not only the journal's."""
    j = await open_journal(config.journal, config.station_id)
    try:
        await j.issue(req())
    finally:
        await j.close()
    with sqlite3.connect(config.journal) as db, pytest.raises(sqlite3.IntegrityError,
                                                              match=r"units\.uci"):
        db.execute("INSERT INTO units (uci, product, state, station, created_at, updated_at,"
                   " last_seq) SELECT uci, product, state, station, created_at, updated_at,"
                   " last_seq FROM units LIMIT 1")


async def test_void_frees_the_hardware_but_never_the_uci(journal: Journal) -> None:
    first = await journal.issue(req(hardware_id="SERIAL-1"))
    await journal.void(first.ucis[0], "board cracked", "test")
    with pytest.raises(AlreadyVoided):
        await journal.void(first.ucis[0], "again", "test")
    with pytest.raises(UnitNotFound):
        await journal.void(new_uci(), "nope", "test")
    second = await journal.issue(req(hardware_id="SERIAL-1"))
    assert second.created and second.ucis != first.ucis
    unit = await journal.unit(first.ucis[0])
    assert unit.state == "voided"
    assert [e.kind for e in unit.events] == ["issued", "voided"]
    assert unit.events[1].data == {"reason": "board cracked"}


async def test_units_page_with_cursor(journal: Journal) -> None:
    issued = (await journal.issue(req(count=7))).ucis
    await journal.void(issued[0], "test", "test")
    seen, cursor = [], None
    while True:
        page, cursor = await journal.units(limit=3, before=cursor)
        seen += [u.uci for u in page]
        if cursor is None:
            break
    assert seen == list(reversed(issued))
    voided, _ = await journal.units(state="voided")
    assert [u.uci for u in voided] == [issued[0]]


async def _filled(journal: Journal) -> list[str]:
    ucis = (await journal.issue(req(count=5))).ucis
    await journal.void(ucis[2], "scrap", "test")
    return ucis


def _tamper(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(sql)


@pytest.mark.parametrize(("sql", "seq", "reason"), [
    ("UPDATE events SET actor = 'mallory' WHERE seq = 3", 3, "event 3 was altered"),
    ("UPDATE events SET data = '{\"reason\":\"fine\"}' WHERE seq = 6", 6, "altered"),
    ("DELETE FROM events WHERE seq = 2", 2, "event 2 is missing"),
    ("DELETE FROM events WHERE seq = 6", 6, "events 6..6 are missing"),
    # Rewriting an event and its hash consistently still breaks the next link.
    ("UPDATE events SET hash = '" + "0" * 64 + "' WHERE seq = 4", 4, "altered"),
])
async def test_tampering_is_found_and_named(config: StationConfig, sql: str, seq: int,
                                            reason: str) -> None:
    j = await open_journal(config.journal, config.station_id)
    await _filled(j)
    assert (await j.verify()).ok
    await j.close()
    _tamper(config.journal, sql)
    j = await open_journal(config.journal, config.station_id)
    try:
        result = await j.verify()
    finally:
        await j.close()
    assert not result.ok
    assert result.bad_seq == seq
    assert reason in result.reason


async def test_verify_and_export_commands(config: StationConfig, config_path: Path) -> None:
    j = await open_journal(config.journal, config.station_id)
    ucis = await _filled(j)
    await j.close()

    ok = run_cli(config_path, "journal", "verify")
    assert "OK, 6 events" in ok.stdout

    lines = run_cli(config_path, "journal", "export", "--format", "jsonl").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e["uci"] for e in events[:5]] == ucis
    assert events[5]["kind"] == "voided" and events[5]["data"] == {"reason": "scrap"}

    out = config.journal.parent / "audit.csv"
    run_cli(config_path, "journal", "export", "--format", "csv", "-o", str(out))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["hash"] for r in rows] == [e["hash"] for e in events]
    assert json.loads(rows[5]["data"]) == {"reason": "scrap"}

    _tamper(config.journal, "UPDATE events SET uci = 'X' WHERE seq = 4")
    bad = run_cli(config_path, "journal", "verify", check=False)
    assert bad.returncode == 1
    assert "TAMPERED at event 4" in bad.stdout


async def test_a_second_process_appends_to_the_same_chain(config: StationConfig,
                                                          config_path: Path,
                                                          journal: Journal) -> None:
    """The CLI may issue while the station runs; both append to one intact chain."""
    await journal.issue(req(count=3))
    out = run_cli(config_path, "issue", "--product", PRODUCT, "--count", "4", "--json")
    await journal.issue(req(count=2))
    assert len(json.loads(out.stdout)["ucis"]) == 4
    result = await journal.verify()
    assert result.ok and result.checked == 9


async def test_verify_while_writing_sees_one_consistent_snapshot(journal: Journal) -> None:
    """A verify that overlaps new issues must not mistake them for removed events."""
    await journal.issue(req(count=6000))

    async def keep_issuing() -> None:
        for _ in range(40):
            await journal.issue(req(count=50))

    writer = asyncio.create_task(keep_issuing())
    results = []
    while not writer.done():
        results.append(await journal.verify())
    await writer
    assert results and all(r.ok for r in results), [r.reason for r in results if not r.ok]
    assert (await journal.verify()).checked == 8000


async def test_a_key_that_only_replays_is_still_committed(open_test_journal: OpenJournal
                                                          ) -> None:
    """A batch that writes only an idempotency key (the hardware id already had its UCI)
    must commit it before answering, like any other write."""
    j = await open_test_journal()
    first = await j.issue(req(hardware_id="AABBCCDDEEFF"))
    again = await j.issue(req(hardware_id="AABBCCDDEEFF", idempotency_key="k", fingerprint="f"))
    assert again.ucis == first.ucis and not again.created
    await j.close()
    j = await open_test_journal()
    try:
        with pytest.raises(IdempotencyConflict):
            await j.issue(req(count=2, idempotency_key="k", fingerprint="other"))
    finally:
        await j.close()


async def test_outbox_rows_are_stored_as_before(config: StationConfig,
                                                sqlite_journal: SQLiteJournal) -> None:
    """Typed outbox requests go to the file as the (action, payload) tuples did: the same
    JSON and the same dedupe keys, so journals written before read back alike."""
    uci = (await sqlite_journal.issue(req())).ucis[0]
    register = RegisterRequest(uci, PRODUCT, "", "AQ-100", "Acme Air Sensor",
                               "2026-11-23T00:00:00+00:00")
    preclaim = PreclaimRequest(register, "acme", "CSR", "ab" * 32)
    await sqlite_journal.record(uci, "verified", "test", {}, enqueue=register)
    for _ in range(2):  # the same key twice is queued once
        await sqlite_journal.record(uci, "key_made", "test", {}, enqueue=preclaim)
    with sqlite3.connect(config.journal) as db:
        rows = db.execute("SELECT action, payload, key FROM outbox ORDER BY id").fetchall()
    key = "ab" * 32
    assert rows == [
        ("register",
         '{"created":"2026-11-23T00:00:00+00:00","hardware_id":"","model":"AQ-100",'
         f'"name":"Acme Air Sensor","product":"{PRODUCT}","uci":"{uci}"}}',
         f"register:{uci}"),
        ("preclaim",
         '{"account":"acme","created":"2026-11-23T00:00:00+00:00","csr":"CSR",'
         '"hardware_id":"","model":"AQ-100","name":"Acme Air Sensor",'
         f'"product":"{PRODUCT}","spki_sha256":"{key}","uci":"{uci}"}}',
         f"preclaim:{uci}:{key}"),
    ]
    entries = await sqlite_journal.outbox_due(now=1e12)
    assert [read_request(e.action, e.payload) for e in entries] == [register, preclaim]


async def test_a_waiter_wakes_on_the_commit_and_gives_up_after_its_time(
        journal: Journal) -> None:
    uci = (await journal.issue(req())).ucis[0]

    async def voided() -> Event | None:
        return (await journal.unit(uci)).last("voided")

    waiting = asyncio.create_task(wait_for(journal, voided, 30))
    await asyncio.sleep(0.01)
    await journal.void(uci, "scrap", "test")
    async with asyncio.timeout(1):  # woken by the commit, not by a poll or the timeout
        event = await waiting
    assert event is not None and event.data == {"reason": "scrap"}

    async def never() -> Event | None:
        return None

    assert await wait_for(journal, never, 0.05) is None
