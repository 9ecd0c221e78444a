"""Offline-first shipping to the fleet center: stations on their own SQLite journals, a real
private PostgreSQL as the center, real `factory` processes (killed with SIGKILL mid-ship)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from factory.fleet import center
from factory.fleet.shipper import Shipper, lag
from factory.journal import open_journal
from factory.journal.records import IssueRequest
from tests.conftest import CONFIG_TEXT, FACTORY, PRODUCT, ROOT, run_cli, write_config
from tests.cups import free_port
from tests.postgres import PrivatePostgres


def req(**kw: object) -> IssueRequest:
    base: dict[str, object] = {"product": PRODUCT, "actor": "test"}
    base.update(kw)
    return IssueRequest(**base)  # type: ignore[arg-type]


@pytest.fixture
def center_url(private_postgres: PrivatePostgres) -> str:
    return private_postgres.new_database()


def station_config(folder: Path, station: str, url: str) -> Path:
    folder.mkdir(exist_ok=True)
    text = CONFIG_TEXT.replace('id = "test-station"', f'id = "{station}"')
    return write_config(folder, f'{text}\n[fleet]\nurl = "{url}"\n')


async def test_events_ship_in_order_once_and_the_center_checks_them(tmp_path: Path,
                                                                   center_url: str) -> None:
    journal = await open_journal(tmp_path / "a.sqlite", "line-a")
    try:
        ucis = (await journal.issue(req(count=5))).ucis
        await journal.void(ucis[1], "scrap", "test")
        shipper = Shipper(journal, "line-a", center_url, page=2)
        assert await shipper.ship_all() == 6
        assert await shipper.ship_all() == 0  # caught up: nothing twice
        await shipper.close()
        await journal.issue(req(hardware_id="HW-1"))
        again = Shipper(journal, "line-a", center_url)  # a new process resumes at the center's
        assert await again.ship_all() == 1
        await again.close()
        conn = await center.connect(center_url)
        try:
            assert (await lag(journal, conn, "line-a")).events == 0
        finally:
            await conn.close()
    finally:
        await journal.close()
    with psycopg.connect(center_url) as db:
        assert db.execute("SELECT count(*), max(seq) FROM fleet.events").fetchone() == (7, 7)
        assert db.execute("SELECT state FROM fleet.units WHERE uci = %s",
                          (ucis[1],)).fetchone() == ("voided",)


async def test_an_altered_event_is_refused_and_named(tmp_path: Path, center_url: str) -> None:
    path = tmp_path / "a.sqlite"
    journal = await open_journal(path, "line-a")
    await journal.issue(req(count=2))
    shipper = Shipper(journal, "line-a", center_url)
    assert await shipper.ship_all() == 2
    await journal.issue(req(count=3))
    await journal.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE events SET actor = 'mallory' WHERE seq = 4")
    journal = await open_journal(path, "line-a")
    try:
        assert await shipper.ship_all() == 0
        assert "line-a's event 4 was altered" in shipper.problem
    finally:
        await shipper.close()
        await journal.close()
    with psycopg.connect(center_url) as db:
        assert db.execute("SELECT max(seq) FROM fleet.events").fetchone() == (2,)
    config = station_config(tmp_path / "view", "line-a", center_url)
    out = run_cli(config, "fleet", "verify", check=False)
    assert out.returncode == 1 and "event 4 was altered" in out.stdout


async def test_a_journal_that_went_backwards_is_refused(tmp_path: Path,
                                                       center_url: str) -> None:
    """A station's journal restored from an old copy writes new events under seqs the center
    holds with other hashes."""
    path = tmp_path / "a.sqlite"
    journal = await open_journal(path, "line-a")
    await journal.issue(req())
    await journal.close()
    old = path.read_bytes()
    journal = await open_journal(path, "line-a")
    await journal.issue(req(count=2))
    shipper = Shipper(journal, "line-a", center_url)
    assert await shipper.ship_all() == 3
    await journal.close()
    for suffix in ("-wal", "-shm", ".anchor"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(old)
    journal = await open_journal(path, "line-a")
    try:
        await journal.issue(req(count=4))
        assert await shipper.ship_all() == 0
        assert "went backwards" in shipper.problem
    finally:
        await shipper.close()
        await journal.close()


async def test_a_hardware_id_issued_offline_at_two_stations_is_a_conflict(
        tmp_path: Path, center_url: str) -> None:
    a = await open_journal(tmp_path / "a.sqlite", "line-a")
    b = await open_journal(tmp_path / "b.sqlite", "line-b")
    try:
        first = (await a.issue(req(hardware_id="AABBCCDDEEFF"))).ucis[0]
        second = (await b.issue(req(hardware_id="AABBCCDDEEFF"))).ucis[0]
        for journal, station in ((a, "line-a"), (b, "line-b")):
            shipper = Shipper(journal, station, center_url)
            await shipper.ship_all()
            await shipper.close()
    finally:
        await a.close()
        await b.close()
    config = station_config(tmp_path / "a", "line-a", center_url)
    run_cli(config, "token", "new", "--role", "viewer", "--name", "x")  # makes its journal
    out = run_cli(config, "fleet", "status", "--json", check=False)
    assert out.returncode == 0, out.stderr
    conflicts = json.loads(out.stdout)["conflicts"]
    assert [(c["uci"], c["station"], c["other_uci"], c["other_station"])
            for c in conflicts] == [(second, "line-b", first, "line-a")]


@contextlib.asynccontextmanager
async def switchable_proxy(target_port: int) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A TCP proxy to the center on its own port; clearing the event makes the center away
    (new connections refused, open ones cut)."""
    port, up = free_port(), asyncio.Event()
    up.set()
    streams: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not up.is_set():
            writer.close()
            return
        to_reader, to_writer = await asyncio.open_connection("127.0.0.1", target_port)
        streams.extend((writer, to_writer))
        await asyncio.gather(pipe(reader, to_writer), pipe(to_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield port, up
    finally:
        server.close()
        for stream in streams:
            stream.close()


async def test_events_wait_while_the_center_is_away_then_ship(
        tmp_path: Path, private_postgres: PrivatePostgres, center_url: str) -> None:
    database = center_url.rsplit("/", 1)[1]
    journal = await open_journal(tmp_path / "a.sqlite", "line-a")
    async with switchable_proxy(private_postgres.port) as (port, up):
        url = f"postgresql://postgres@127.0.0.1:{port}/{database}"
        shipper = Shipper(journal, "line-a", url)
        running = asyncio.create_task(shipper.run_forever())
        try:
            await journal.issue(req(count=3))
            async with asyncio.timeout(30):
                while shipper.shipped < 3:
                    await asyncio.sleep(0.05)
            up.clear()
            await shipper.close()  # the open connection is cut too
            for _ in range(4):  # thousands queue while it is away
                await journal.issue(req(count=1000))
            async with asyncio.timeout(30):
                while not shipper.away:
                    await asyncio.sleep(0.05)
            conn = await center.connect(center_url)
            try:
                waiting = await lag(journal, conn, "line-a")
            finally:
                await conn.close()
            assert waiting.events == 4000 and waiting.center_seq == 3
            up.set()
            async with asyncio.timeout(90):  # the backoff's longest wait is 60 s
                # `away` clears once the round that shipped the last event ends.
                while shipper.shipped < 4003 or shipper.away:
                    await asyncio.sleep(0.1)
            assert shipper.shipped == 4003
        finally:
            shipper.stop()
            await running
            await journal.close()
    with psycopg.connect(center_url) as db:  # all of them, in order: no gap, none twice
        assert db.execute("SELECT count(*), max(seq) FROM fleet.events").fetchone() == (
            4003, 4003)
        assert db.execute("SELECT head_seq, refused FROM fleet.stations").fetchone() == (
            4003, "")


@pytest.mark.slow
async def test_sigkill_mid_ship_loses_and_repeats_nothing(tmp_path: Path,
                                                          center_url: str) -> None:
    config = station_config(tmp_path / "a", "line-a", center_url)
    journal = await open_journal(tmp_path / "a" / "journal.sqlite", "line-a")
    try:
        for _ in range(20):
            await journal.issue(req(count=1000))
    finally:
        await journal.close()
    await (await center.connect(center_url)).close()  # the schema, for the polls below
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    killed = 0
    for _ in range(3):
        proc = subprocess.Popen([*FACTORY, "-c", str(config), "fleet", "ship", "--page", "200"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with psycopg.connect(center_url, autocommit=True) as db:
            for _ in range(600):
                if proc.poll() is not None:
                    break
                row = db.execute("SELECT coalesce(max(seq), 0) FROM fleet.events").fetchone()
                if row and 0 < row[0] < 20000:  # part shipped: kill it now
                    break
                await asyncio.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    assert killed, "the shipper finished before it could be killed"
    out = run_cli(config, "fleet", "ship")
    assert "caught up" in out.stdout
    with psycopg.connect(center_url) as db:
        assert db.execute("SELECT count(*), max(seq) FROM fleet.events").fetchone() == (
            20000, 20000)
        assert db.execute("SELECT count(*) FROM fleet.units").fetchone() == (20000,)
    verify = run_cli(config, "fleet", "verify")
    assert "line-a: OK, chain intact" in verify.stdout
    lines = run_cli(config, "fleet", "export", "--format", "jsonl").stdout.splitlines()
    assert len(lines) == 20000 and json.loads(lines[0])["seq"] == 1
