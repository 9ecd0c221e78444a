"""Hardware identity across the fleet (mode 2): two stations on their own SQLite journals and
one center (a private PostgreSQL). A unit re-tested at another station keeps its UCI; with the
center away a station issues locally at once, and the center flags the double binding."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from factory.fleet import center, view
from factory.fleet.identity import FleetIssuing
from factory.fleet.shipper import Shipper
from factory.journal import open_journal
from factory.journal.errors import InvalidData
from factory.journal.interface import Journal
from factory.journal.records import IssueRequest
from tests.conftest import PRODUCT, run_cli
from tests.cups import free_port
from tests.postgres import PrivatePostgres
from tests.processes import station_process
from tests.test_fleet import station_config


@pytest.fixture
def center_url(private_postgres: PrivatePostgres) -> str:
    return private_postgres.new_database()


def hw(hardware_id: str) -> IssueRequest:
    return IssueRequest(product=PRODUCT, actor="test", hardware_id=hardware_id)


async def ship(journal: Journal, station: str, url: str) -> None:
    shipper = Shipper(journal, station, url)
    try:
        await shipper.ship_all()
        assert shipper.problem == ""
    finally:
        await shipper.close()


@contextlib.asynccontextmanager
async def silent_center() -> AsyncIterator[str]:
    """A center that takes the connection and never answers (a hung server or a black hole
    on the network): the URL of it."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    port = free_port()
    server = await asyncio.start_server(hold, "127.0.0.1", port)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/nowhere"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_unit_tested_at_another_station_keeps_its_uci(tmp_path: Path,
                                                              center_url: str) -> None:
    a = await open_journal(tmp_path / "a.sqlite", "line-a")
    b = await open_journal(tmp_path / "b.sqlite", "line-b")
    at_a, at_b = FleetIssuing(a, center_url), FleetIssuing(b, center_url)
    try:
        first = (await at_a.issue(hw("AABBCCDDEEFF"))).ucis[0]
        await ship(a, "line-a", center_url)
        again = await at_b.issue(hw("AABBCCDDEEFF"))
        assert again.ucis == [first] and again.created
        assert (await at_b.issue(hw("AABBCCDDEEFF"))).ucis == [first]  # now from B's own
        other = (await at_b.issue(hw("112233445566"))).ucis[0]  # unknown anywhere: new
        assert other != first
        unit = await b.unit(first)
        assert unit.hardware_id == "AABBCCDDEEFF" and unit.state == "issued"
        issued = unit.last("issued")
        assert issued is not None and issued.data["bound_at"] == "line-a"
        await ship(b, "line-b", center_url)
    finally:
        await at_a.close()
        await at_b.close()
        await a.close()
        await b.close()
    conn = await center.connect(center_url)
    try:
        assert await view.conflicts(conn) == []
        found = await view.unit(conn, first)
        assert found is not None and found["station"] == "line-a"
        assert [(e["station"], e["kind"]) for e in found["events"]] == [
            ("line-a", "issued"), ("line-b", "issued")]
    finally:
        await conn.close()


async def test_with_the_center_away_the_station_issues_locally_and_the_center_flags_it(
        tmp_path: Path, center_url: str) -> None:
    a = await open_journal(tmp_path / "a.sqlite", "line-a")
    b = await open_journal(tmp_path / "b.sqlite", "line-b")
    at_a = FleetIssuing(a, center_url)
    try:
        first = (await at_a.issue(hw("AABBCCDDEEFF"))).ucis[0]
        await ship(a, "line-a", center_url)
        async with silent_center() as url:
            at_b = FleetIssuing(b, url, ask_seconds=0.3)
            try:
                async with asyncio.timeout(10):  # a unit never hangs on the center
                    second = (await at_b.issue(hw("AABBCCDDEEFF"))).ucis[0]
                    assert at_b.away  # and the station says why it issued locally
                    third = (await at_b.issue(hw("665544332211"))).ucis[0]  # not asked
            finally:
                await at_b.close()
        assert second != first and third not in (first, second)
        issued = (await b.unit(second)).last("issued")
        assert issued is not None and "bound_at" not in issued.data
        await ship(b, "line-b", center_url)
        conn = await center.connect(center_url)
        try:
            conflicts = await view.conflicts(conn)
            assert [(c["uci"], c["station"], c["other_uci"], c["other_station"], c["open"])
                    for c in conflicts] == [(second, "line-b", first, "line-a", True)]
            await b.void(second, "duplicate of the fleet's unit", "test")  # a person acts
            await ship(b, "line-b", center_url)
            assert [c["open"] for c in await view.conflicts(conn)] == [False]
        finally:
            await conn.close()
    finally:
        await at_a.close()
        await a.close()
        await b.close()


async def test_a_shared_postgresql_journal_refuses_a_bound_uci(
        private_postgres: PrivatePostgres) -> None:
    journal = await open_journal(private_postgres.new_database(), "line-a")
    try:
        with pytest.raises(InvalidData, match="uci"):
            await journal.issue(IssueRequest(product=PRODUCT, actor="test",
                                             hardware_id="AABBCCDDEEFF",
                                             uci="0" * 17, bound_at="line-b"))
    finally:
        await journal.close()


async def test_a_serving_station_asks_the_center_and_says_its_lag(tmp_path: Path,
                                                                  center_url: str) -> None:
    """`factory serve` with [fleet] url: its HTTP API gives a unit known at another station
    that unit's UCI, and its /metrics say how far the center is behind."""
    a = await open_journal(tmp_path / "a.sqlite", "line-a")
    try:
        first = (await a.issue(hw("AABBCCDDEEFF"))).ucis[0]
        await ship(a, "line-a", center_url)
    finally:
        await a.close()
    config = station_config(tmp_path / "b", "line-b", center_url)
    token = run_cli(config, "token", "new", "--role", "device", "--name", "d").stdout.split()[0]
    auth = {"Authorization": f"Bearer {token}"}
    async with station_process(config) as (_, base), aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/v1/ucis", headers=auth, json={
                "product": PRODUCT, "hardware_id": "aa:bb:cc:dd:ee:ff"}) as resp:
            assert resp.status == 201 and (await resp.json())["uci"] == first
        async with asyncio.timeout(30):  # the shipper catches up: nothing left behind
            while True:
                async with session.get(f"{base}/metrics") as resp:
                    text = await resp.text()
                if "factory_fleet_lag_events 0.0" in text:
                    break
                await asyncio.sleep(0.1)
    conn = await center.connect(center_url)
    try:
        found = await view.unit(conn, first)
        assert found is not None
        assert [(e["station"], e["kind"]) for e in found["events"]] == [
            ("line-a", "issued"), ("line-b", "issued")]
    finally:
        await conn.close()
