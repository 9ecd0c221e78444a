"""The PostgreSQL journal's own promises, beyond those every backend keeps (test_journal.py):
several stations in one database, each with its own chain, one fleet of units."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psycopg
import pytest

from factory.config import load
from factory.journal import open_journal
from factory.journal.anchor import AnchorFile, Mark
from factory.journal.errors import JournalUnavailable
from factory.journal.postgres.migrations import MIGRATIONS
from factory.journal.records import IssueRequest
from tests.conftest import PRODUCT, write_config
from tests.postgres import PrivatePostgres


def req(**kw: object) -> IssueRequest:
    base: dict[str, object] = {"product": PRODUCT, "actor": "test"}
    base.update(kw)
    return IssueRequest(**base)  # type: ignore[arg-type]


@pytest.fixture
def database(private_postgres: PrivatePostgres) -> str:
    return private_postgres.new_database()


async def test_each_station_has_its_own_chain(database: str) -> None:
    a = await open_journal(database, "line-a")
    b = await open_journal(database, "line-b")
    try:
        await asyncio.gather(a.issue(req(count=3)), b.issue(req(count=5)))
        await a.issue(req())
        events_a = [e async for e in a.events()]
        events_b = [e async for e in b.events()]
        assert [e.seq for e in events_a] == [1, 2, 3, 4]
        assert [e.seq for e in events_b] == [1, 2, 3, 4, 5]
        assert {e.station for e in events_a} == {"line-a"}
        assert (await a.verify()).checked == 4 and (await b.verify()).checked == 5
        assert await a.stats() == {"issued": 4} and await b.stats() == {"issued": 5}
    finally:
        await a.close()
        await b.close()


async def test_two_stations_racing_for_a_hardware_id_get_one_uci(database: str) -> None:
    """Two stations, two writer connections, the same hardware ids at once: the unique index
    on live (product, hardware id) decides, and the loser gets the winner's UCI."""
    stations = [await open_journal(database, f"line-{n}") for n in range(3)]
    try:
        for round_ in range(5):
            hardware = f"AA:BB:CC:00:00:{round_:02d}"
            results = await asyncio.gather(*(j.issue(req(hardware_id=hardware))
                                             for j in stations for _ in range(4)))
            assert len({r.ucis[0] for r in results}) == 1, results
            assert sum(r.created for r in results) == 1
        for j in stations:
            assert (await j.verify()).ok
    finally:
        for j in stations:
            await j.close()
    with psycopg.connect(database) as db:
        rows = db.execute("SELECT hardware_id, count(*) FROM units GROUP BY hardware_id"
                          " HAVING count(*) > 1").fetchall()
    assert rows == []


async def test_the_database_refuses_a_second_live_unit_for_a_hardware_id(database: str
                                                                         ) -> None:
    j = await open_journal(database, "line-a")
    try:
        await j.issue(req(hardware_id="HW-1"))
    finally:
        await j.close()
    with psycopg.connect(database) as db, pytest.raises(psycopg.errors.UniqueViolation,
                                                        match="units_hardware"):
        db.execute("INSERT INTO units (uci, product, hardware_id, state, station, created_at,"
                   " updated_at, last_station, last_seq) SELECT 'X', product, hardware_id,"
                   " 'issued', 'line-b', '', '', 'line-b', 1 FROM units")


async def test_a_unit_takes_steps_at_another_station(database: str) -> None:
    a = await open_journal(database, "line-a")
    b = await open_journal(database, "line-b")
    try:
        uci = (await a.issue(req(hardware_id="HW-9"))).ucis[0]
        await b.record(uci, "written", "test", {"port": "x"}, state="written")
        unit = await a.unit(uci)
        assert [(e.kind, e.station, e.seq) for e in unit.events] == [
            ("issued", "line-a", 1), ("written", "line-b", 1)]
        assert unit.state == "written" and unit.station == "line-a"
        assert [u.uci for u in await b.live_units_for_hardware("HW-9")] == [uci]
        assert (await a.verify()).ok and (await b.verify()).ok
    finally:
        await a.close()
        await b.close()


async def test_commits_are_synchronous_and_migrations_numbered(database: str) -> None:
    j = await open_journal(database, "line-a")
    try:
        await j.issue(req())
        async with await psycopg.AsyncConnection.connect(database) as db:
            names = [r[0] for r in await (await db.execute(
                "SELECT name FROM schema_migrations ORDER BY name")).fetchall()]
        assert names == [name for name, _ in MIGRATIONS]
        writer = j._batches.conn  # type: ignore[attr-defined]
        assert (await (await writer.execute("SHOW synchronous_commit")).fetchone()) == ("on",)
    finally:
        await j.close()
    again = await open_journal(database, "line-a")  # migrations are not applied twice
    await again.close()


async def test_an_unreachable_server_is_named_without_its_password(
        private_postgres: PrivatePostgres) -> None:
    url = f"postgresql://postgres:s3cret@127.0.0.1:{private_postgres.port}/no_such_db"
    with pytest.raises(JournalUnavailable) as caught:
        await open_journal(url, "line-a")
    assert "s3cret" not in str(caught.value) and "no_such_db" in str(caught.value)
    with pytest.raises(JournalUnavailable, match="no journal backend for mysql://"):
        await open_journal("mysql://x/y", "line-a")


def test_the_config_takes_a_url(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace(
        'journal = "journal.sqlite"', 'journal = "postgresql://db.example/factory"'))
    config = load(path)
    assert config.journal_location == "postgresql://db.example/factory"
    assert config.journal.parent == tmp_path  # the station's own files stay beside its config


async def test_a_nul_character_refuses_its_request_not_its_batch(database: str) -> None:
    from factory.journal.errors import Unstorable

    j = await open_journal(database, "line-a")
    try:
        bad, good = await asyncio.gather(j.issue(req(idempotency_key="a\x00b", fingerprint="f")),
                                         j.issue(req()), return_exceptions=True)
        assert isinstance(bad, Unstorable) and not isinstance(good, BaseException)
        assert j.write_failure == ""
        assert (await j.stats()) == {"issued": 1}
    finally:
        await j.close()


async def test_a_database_restored_from_an_old_backup_is_held_at_start(
        tmp_path: Path, private_postgres: PrivatePostgres) -> None:
    """The station keeps its chain head in a local anchor file, as a SQLite journal does: a
    database put back from a backup older than the station's last acknowledged event (its
    chain went backwards) is caught when the station opens it, named, and held until a person
    accepts the loss."""
    url = private_postgres.new_database()
    anchor = tmp_path / "journal.postgresql.anchor"
    j = await open_journal(url, "line-a", anchor=anchor)
    try:
        await j.issue(req(count=3))
    finally:
        await j.close()
    name, backup = url.rsplit("/", 1)[1], f"{url.rsplit('/', 1)[1]}_backup"
    private_postgres.psql(f"CREATE DATABASE {backup} TEMPLATE {name}")  # the nightly backup
    j = await open_journal(url, "line-a", anchor=anchor)
    try:
        await j.issue(req(count=2))  # acknowledged after the backup
        assert j.hold == ""
    finally:
        await j.close()
    restored = await open_journal(private_postgres.url(backup), "line-a", anchor=anchor)
    try:
        assert restored.hold.startswith("events 4..5 are missing (the anchor, written ")
        with pytest.raises(JournalUnavailable, match=r"the journal is held: events 4\.\.5"):
            await restored.issue(req())
        data = await restored.accept_loss("supervisor")
        assert data["problem"].startswith("events 4..5 are missing")
        assert len((await restored.issue(req())).ucis) == 1
        assert (await restored.verify()).ok
    finally:
        await restored.close()
    # The anchor follows the restored chain now: the database that went on is the other one.
    again = await open_journal(private_postgres.url(backup), "line-a", anchor=anchor)
    await again.close()
    assert again.hold == ""


def anchored(path: Path) -> Mark:
    """What the anchor file holds."""
    file = AnchorFile(path, create=False)
    try:
        mark = file.read().mark
    finally:
        file.close()
    assert mark is not None
    return mark


CHILD = """
import asyncio, sys
from pathlib import Path
from factory.journal import open_journal
from factory.journal.records import IssueRequest

async def main() -> None:
    j = await open_journal(sys.argv[1], "line-a", anchor=Path(sys.argv[2]))
    for count in (3, 1):
        result = await j.issue(IssueRequest(product=sys.argv[3], actor="test", count=count))
        print("told", *result.ucis, flush=True)

asyncio.run(main())
"""


async def test_killed_between_the_commit_and_the_anchor_the_anchor_catches_up(
        tmp_path: Path, private_postgres: PrivatePostgres) -> None:
    """The station is SIGKILLed right after PostgreSQL committed a batch, before the anchor
    was synced for it: its caller was never told; at restart the event is there, the anchor
    (one batch behind) catches up, and nothing is held."""
    url = private_postgres.new_database()
    anchor = tmp_path / "journal.postgresql.anchor"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, url, str(anchor), PRODUCT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "FACTORY_FAILPOINTS":
                                             "journal.committed=2"})
    out, err = await child.communicate()
    assert child.returncode == -signal.SIGKILL, err.decode()
    told = [line.split()[1:] for line in out.decode().splitlines()]
    assert len(told) == 1 and len(told[0]) == 3  # the second batch's caller heard nothing
    assert anchored(anchor).seq == 3  # one batch behind the database
    j = await open_journal(url, "line-a", anchor=anchor)
    try:
        assert j.hold == ""
        events = [e async for e in j.events()]
        assert [e.seq for e in events] == [1, 2, 3, 4]  # committed, though never told
        assert (await j.verify()).ok
    finally:
        await j.close()
    assert anchored(anchor).same_point(Mark(4, events[-1].hash))
