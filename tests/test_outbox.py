"""Registration through the outbox, against the real reference registry on 127.0.0.1: the line
goes on while the registry is down, the backlog drains when it is back, and every unit is
registered exactly once, also when the station died between sending and journaling."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from factory.config import StationConfig, load
from factory.config.upstream import where_credentials_go
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.station import registration
from factory.testbed.registry.app import make_app
from factory.testbed.registry.keys import STORE, Settings
from factory.units.pipeline import Identify, Issue, Pipeline, Step, UnitRun, Verify, Write
from factory.upstream.http import HttpUpstream
from factory.upstream.outbox import OutboxWorker, registration_from
from factory.upstream.requests import RegisterRequest
from tests.conftest import PRODUCT, Station, run_cli
from tests.test_pipeline import MemoryUnit

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """The reference registry on a fixed port, so it can be stopped and started again."""

    def __init__(self, db: Path) -> None:
        self.port = free_port()
        self.settings = Settings(db=db)
        self.server: TestServer | None = None
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self.server = TestServer(make_app(self.settings), host="127.0.0.1", port=self.port)
        await self.server.start_server()
        if not self.token:
            self.token = await self.server.app[STORE].add_token(
                "product", "line-1", "2026-11-23T00:00:00Z")

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.close()

    async def device(self, session: aiohttp.ClientSession, uci: str) -> int:
        async with session.get(f"{self.url}v1/devices/{uci}",
                               headers={"Authorization": f"Bearer {self.token}"}) as resp:
            return resp.status


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def provision(config: StationConfig, journal: Journal, mac: str) -> str:
    product = config.product(PRODUCT)
    assert product is not None
    steps: list[Step] = [Identify(), Issue(), Write(), Verify(registration)]
    run = await Pipeline(journal, steps).provision(
        UnitRun("f1", product, "config/device.json5"), MemoryUnit(hardware_id=mac))
    assert run.uci is not None
    return run.uci


async def test_backlog_grows_while_down_and_drains_once(tmp_path: Path, config: StationConfig,
                                                        journal: Journal,
                                                        session: aiohttp.ClientSession) -> None:
    registry = Registry(tmp_path / "registry.db")
    await registry.start()
    await registry.stop()  # the factory network is down
    worker = OutboxWorker(journal, HttpUpstream(session, registry.url, registry.token,
                                                timeout=2),
                          base=0.01, cap=0.05, rng=random.Random(1))
    ucis = [await provision(config, journal, f"02:00:00:00:01:{i:02x}") for i in range(3)]
    assert (await journal.outbox_stats()).pending == 3  # the line went on
    assert await worker.drain_once() == 0
    stats = await journal.outbox_stats()
    assert stats.pending == 3 and stats.oldest is not None and worker.last_error

    await registry.start()
    for _ in range(50):
        await worker.drain_once()
        if (await journal.outbox_stats()).pending == 0:
            break
        await asyncio.sleep(0.05)
    stats = await journal.outbox_stats()
    assert (stats.pending, stats.done, stats.failed) == (0, 3, 0)
    for uci in ucis:
        assert await registry.device(session, uci) == 200
        events = [e.kind for e in (await journal.unit(uci)).events]
        assert events == ["issued", "written", "verified", "registered"]
        assert (await journal.unit(uci)).state == "registered"
    assert await worker.drain_once() == 0  # nothing left, nothing sent twice
    await registry.stop()


async def test_sent_but_not_journaled_is_sent_again_and_counted_once(
        tmp_path: Path, config: StationConfig, journal: Journal,
        session: aiohttp.ClientSession) -> None:
    registry = Registry(tmp_path / "registry.db")
    await registry.start()
    upstream = HttpUpstream(session, registry.url, registry.token)
    uci = await provision(config, journal, "02:00:00:00:02:01")
    entry, = await journal.outbox_due(now=1e12)
    # The station sent it, then was killed before the answer reached the journal.
    first = await upstream.register(registration_from(RegisterRequest.from_json(entry.payload)))
    assert first.created
    worker = OutboxWorker(journal, upstream)
    assert await worker.drain_once() == 1
    registered = (await journal.unit(uci)).events[-1]
    assert registered.kind == "registered" and registered.data["created"] is False
    assert (await journal.verify()).ok
    await registry.stop()


async def test_a_refused_unit_is_set_aside_and_a_bad_token_is_not(
        tmp_path: Path, config: StationConfig, journal: Journal,
        session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry(tmp_path / "registry.db")
    await registry.start()
    uci = await provision(config, journal, "02:00:00:00:03:01")
    wrong = OutboxWorker(journal, HttpUpstream(session, registry.url, "wrong-token"),
                         cap=0.01, credentials_hint=where_credentials_go("http"))
    with caplog.at_level(logging.ERROR, logger="factory"):
        assert await wrong.drain_once() == 0
    # The log says what to fix for this kind of upstream (not another kind's credentials).
    said, = [r.getMessage() for r in caplog.records if "credentials" in r.getMessage()]
    assert "upstream.token_file" in said and "AWS" not in said
    assert (await journal.unit(uci)).state == "verified"  # not the unit's fault
    assert (await journal.outbox_stats()).pending == 1
    # The registry holds this UCI with another body: a conflict only a person can settle.
    entry, = await journal.outbox_due(now=1e12)
    clash = registration_from(RegisterRequest.from_json({**entry.payload, "model": "OTHER"}))
    await HttpUpstream(session, registry.url, registry.token).register(clash)
    right = OutboxWorker(journal, HttpUpstream(session, registry.url, registry.token))
    await asyncio.sleep(0.02)
    assert await right.drain_once() == 1
    unit = await journal.unit(uci)
    assert unit.state == "failed" and unit.events[-1].kind == "register_failed"
    assert "model" in unit.events[-1].data["reason"]
    assert (await journal.outbox_stats()).failed == 1
    await registry.stop()




async def test_backlog_is_shown_by_api_and_cli_and_a_failed_entry_can_be_retried(
        tmp_path: Path, config_path: Path, station: Station,
        session: aiohttp.ClientSession) -> None:
    journal = station.journal
    ucis = [await provision(station.config, journal, f"02:00:00:00:04:{i:02x}")
            for i in range(2)]
    resp = await station.client.get("/api/v1/outbox", headers=station.auth("viewer"))
    assert resp.status == 200
    view = await resp.json()
    assert (view["pending"], view["failed"], view["done"]) == (2, 0, 0)
    assert view["oldest_age_seconds"] is not None and view["oldest_age_seconds"] >= 0
    assert [e["uci"] for e in view["entries"]] == ucis
    assert {e["action"] for e in view["entries"]} == {"register"}
    bad = await station.client.get("/api/v1/outbox?state=lost", headers=station.auth("viewer"))
    assert bad.status == 422 and (await bad.json())["field"] == "state"
    assert (await station.client.get("/api/v1/outbox")).status == 401

    printed = run_cli(config_path, "outbox").stdout
    assert printed.startswith("outbox: 2 pending (oldest ") and ucis[0][:4] in printed

    # The registry holds the first unit with another model: set aside for a person ...
    registry = Registry(tmp_path / "registry.db")
    await registry.start()
    upstream = HttpUpstream(session, registry.url, registry.token)
    first, = await journal.outbox_due(now=1e12, limit=1)
    await upstream.register(registration_from(
        RegisterRequest.from_json({**first.payload, "model": "OTHER"})))
    assert await OutboxWorker(journal, upstream).drain_once() == 2
    failed = run_cli(config_path, "outbox", "--state", "failed", "--json").stdout
    assert [e["uci"] for e in json.loads(failed)["entries"]] == [ucis[0]]
    # ... who fixes the registry's record and asks for another try.
    with sqlite3.connect(tmp_path / "registry.db") as db:  # the contract has no edit
        db.execute("UPDATE devices SET model = ? WHERE id = ?",
                   (first.payload["model"], ucis[0]))
    assert "queued again" in run_cli(config_path, "outbox", "retry", ucis[0]).stdout
    assert run_cli(config_path, "outbox", "retry", ucis[0], check=False).returncode == 2
    assert await OutboxWorker(journal, upstream).drain_once() == 1
    unit = await journal.unit(ucis[0])
    assert [e.kind for e in unit.events][-3:] == ["register_failed", "requeued", "registered"]
    assert unit.state == "registered" and await registry.device(session, ucis[0]) == 200
    await registry.stop()


async def test_two_workers_on_one_journal_journal_an_answer_once(
        tmp_path: Path, config: StationConfig, journal: Journal,
        session: aiohttp.ClientSession) -> None:
    """A batch run and a station draining the same journal both send an entry (the upstream
    takes it once, idempotently); only the first answer is journaled."""
    registry = Registry(tmp_path / "registry.db")
    await registry.start()
    ucis = [await provision(config, journal, f"02:00:00:00:07:{i:02x}") for i in range(5)]
    workers = [OutboxWorker(journal, HttpUpstream(session, registry.url, registry.token))
               for _ in range(2)]
    await asyncio.gather(*(w.drain_once() for w in workers))
    for uci in ucis:
        kinds = [e.kind for e in (await journal.unit(uci)).events]
        assert kinds.count("registered") == 1, kinds
    stats = await journal.outbox_stats()
    assert (stats.pending, stats.done) == (0, 5)
    assert (await journal.verify()).ok
    await registry.stop()


async def test_station_killed_mid_drain_registers_every_unit_once(tmp_path: Path) -> None:
    """A backlog drained by a real `factory serve`, SIGKILLed half way and restarted: every
    unit ends registered, the registry holds each once, and the journal says so once."""
    from tests.conftest import CONFIG_TEXT, write_config
    from tests.test_durability import station_process

    registry = Registry(tmp_path / "registry.db")
    await registry.start()
    try:
        (tmp_path / "registry.token").write_text(registry.token)
        config_path = write_config(tmp_path, CONFIG_TEXT + f"""
[upstream]
kind = "http"
url = "{registry.url}"
token_file = "registry.token"
concurrency = 2
""")
        config = load(config_path)
        journal = await open_journal(config.journal, config.station_id)
        ucis = [await provision(config, journal, f"02:00:00:01:{i // 256:02x}:{i % 256:02x}")
                for i in range(300)]
        await journal.close()

        def registered() -> int:
            with sqlite3.connect(f"file:{config.journal}?mode=ro", uri=True) as db:
                return int(db.execute("SELECT count(*) FROM events WHERE kind = 'registered'")
                           .fetchone()[0])

        async with station_process(config_path) as (process, _):
            async with asyncio.timeout(30):
                while registered() < 10:
                    await asyncio.sleep(0.005)
            process.kill()  # kill -9, mid-drain
        at_kill = registered()
        assert 0 < at_kill < len(ucis)
        async with station_process(config_path):
            async with asyncio.timeout(60):
                while registered() < len(ucis):
                    await asyncio.sleep(0.05)
        journal = await open_journal(config.journal, config.station_id)
        try:
            for uci in ucis:
                kinds = [e.kind for e in (await journal.unit(uci)).events]
                assert kinds.count("registered") == 1, (uci, kinds)
            stats = await journal.outbox_stats()
            assert (stats.pending, stats.failed, stats.done) == (0, 0, len(ucis))
            assert (await journal.verify()).ok
        finally:
            await journal.close()
        with sqlite3.connect(tmp_path / "registry.db") as db:
            held = [row[0] for row in db.execute("SELECT id FROM devices")]
        assert sorted(held) == sorted(ucis)  # each unit once at the registry
    finally:
        await registry.stop()
