"""PostgreSQL failing under the fleet: the server killed (SIGKILL) in the middle of a mode-1
journal's transaction, and the center's connection cut in the middle of a shipped page (a TCP
proxy that resets it). Nothing acknowledged is lost, nothing is stored twice, no gap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from factory import failpoints
from factory.fleet import center
from factory.fleet.shipper import Shipper
from factory.journal import open_journal
from factory.journal.errors import JournalError
from factory.journal.records import IssueRequest
from tests.conftest import PRODUCT
from tests.cups import free_port
from tests.postgres import PrivatePostgres


def req(**kw: object) -> IssueRequest:
    base: dict[str, object] = {"product": PRODUCT, "actor": "test"}
    base.update(kw)
    return IssueRequest(**base)  # type: ignore[arg-type]


@pytest.fixture
def own_postgres() -> Iterator[PrivatePostgres]:
    """A server of the test's own: it is killed, so it cannot be the run's shared one."""
    server = PrivatePostgres()
    server.start()
    yield server
    server.stop()


async def test_postgres_killed_mid_transaction_loses_and_repeats_nothing(
        own_postgres: PrivatePostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers issue without pause; the server is SIGKILLed with a batch's statements sent and
    its COMMIT not yet answered. Callers are refused (never answered with UCIs the server did
    not keep) while it is down, the writer reconnects once it is back, and every UCI ever
    acknowledged is in the journal exactly once, the chain intact."""
    url = own_postgres.new_database()
    journal = await open_journal(url, "line-a")
    real_hit = failpoints.hit
    commits = 0

    def hit(name: str) -> None:
        nonlocal commits
        if name == "journal.commit":
            commits += 1
            if commits == 5:
                own_postgres.kill()  # mid-transaction: its COMMIT never reaches the server
        real_hit(name)

    monkeypatch.setattr(failpoints, "hit", hit)
    acknowledged: list[str] = []
    refused = 0
    back = asyncio.Event()

    async def caller() -> None:
        nonlocal refused
        while not back.is_set() or len(acknowledged) < 400:
            try:
                acknowledged.extend((await journal.issue(req(count=3))).ucis)
            except JournalError:
                refused += 1
                await asyncio.sleep(0.02)

    try:
        callers = [asyncio.create_task(caller()) for _ in range(16)]
        async with asyncio.timeout(60):
            while own_postgres.proc is None or own_postgres.proc.poll() is None:
                await asyncio.sleep(0.01)
            held = len(acknowledged)
            await asyncio.sleep(0.3)  # callers keep asking while the server is away
            assert len(acknowledged) == held and refused > 0
            await asyncio.to_thread(own_postgres.run)
            back.set()
            await asyncio.gather(*callers)
        result = await journal.verify()
        assert result.ok, result
    finally:
        await journal.close()
    with psycopg.connect(url) as db:
        stored = [row[0] for row in db.execute("SELECT uci FROM units")]
        events = db.execute("SELECT count(*), max(seq) FROM events").fetchone()
    assert len(acknowledged) == len(set(acknowledged)) > held
    assert set(acknowledged) <= set(stored)  # nothing acknowledged lost
    assert len(stored) == len(set(stored))  # nothing twice
    # Unacknowledged UCIs may be stored (committed, the answer lost with the server), but the
    # chain has no gap and no more events than units.
    assert events == (len(stored), len(stored))


@contextlib.asynccontextmanager
async def cutting_proxy(target_port: int, after: int) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP proxy to PostgreSQL whose first connection is reset once `after` bytes went from
    the client to the server (in the middle of a page); the list counts the cuts."""
    port, cuts = free_port(), [0]
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        writers.extend((writer, up_writer))
        cut = not cuts[0]
        sent = 0

        async def upstream() -> None:
            nonlocal sent
            while data := await reader.read(65536):
                sent += len(data)
                if cut and sent > after and not cuts[0]:
                    cuts[0] += 1
                    writer.transport.abort()  # a reset, both ways, mid-message
                    up_writer.transport.abort()
                    return
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        with contextlib.suppress(ConnectionError):
            await asyncio.gather(upstream(), downstream())
        writer.close()
        up_writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield port, cuts
    finally:
        server.close()
        for w in writers:
            w.transport.abort()


async def test_a_connection_reset_mid_page_resumes_without_gap_or_repeat(
        tmp_path: Path, private_postgres: PrivatePostgres) -> None:
    url = private_postgres.new_database()
    database = url.rsplit("/", 1)[1]
    journal = await open_journal(tmp_path / "a.sqlite", "line-a")
    try:
        await journal.issue(req(count=6000))
        await (await center.connect(url)).close()  # the schema, before the proxy counts
        async with cutting_proxy(private_postgres.port, after=300_000) as (port, cuts):
            shipper = Shipper(journal, "line-a", f"postgresql://postgres@127.0.0.1:{port}/"
                                                 f"{database}", page=2000)
            failures = 0
            while True:
                try:
                    if await shipper.ship_all() == 0:
                        break
                except center.CenterError:
                    failures += 1
            await shipper.close()
        assert cuts == [1] and failures == 1 and not shipper.problem
    finally:
        await journal.close()
    with psycopg.connect(url) as db:
        assert db.execute("SELECT count(*), min(seq), max(seq) FROM fleet.events"
                          ).fetchone() == (6000, 1, 6000)
        assert db.execute("SELECT count(*) FROM fleet.units").fetchone() == (6000,)
        assert db.execute("SELECT head_seq, refused FROM fleet.stations").fetchone() == (
            6000, "")
