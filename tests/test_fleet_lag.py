"""The fleet center's lag behind a station (events, seconds): on the station's status page,
in its /metrics and in `factory fleet status`, against a real center (private PostgreSQL)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from factory.config import StationConfig, load
from factory.fleet.shipper import Shipper
from factory.journal import open_journal
from factory.journal.records import IssueRequest
from factory.status.snapshot import LiveSources
from factory.tokens import new_token, token_hash
from factory.web.app import make_app
from tests.conftest import PRODUCT, run_cli
from tests.postgres import PrivatePostgres
from tests.test_fleet import station_config


def req(count: int) -> IssueRequest:
    return IssueRequest(product=PRODUCT, actor="test", count=count)


def samples(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


async def test_lag_on_the_status_page_and_in_the_metrics(
        tmp_path: Path, private_postgres: PrivatePostgres) -> None:
    url = private_postgres.new_database()
    config: StationConfig = load(station_config(tmp_path, "line-a", url))
    journal = await open_journal(config.journal, config.station_id)
    shipper = Shipper(journal, config.station_id, url)
    token = new_token()
    await journal.add_token("screen", "viewer", token_hash(token))
    auth = {"Authorization": f"Bearer {token}"}
    app = make_app(config, journal, live=LiveSources(fleet=shipper))
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            page = await (await client.get("/", headers=auth)).text()
            assert "Fleet center" in page and "not reached since start" in page
            metrics = samples(await (await client.get("/metrics")).text())
            assert metrics["factory_fleet_center_up"] == 0

            await journal.issue(req(3))
            await shipper.ship_all()
            await journal.issue(req(4))  # 4 events the center does not hold yet
            status = await (await client.get("/api/v1/status", headers=auth)).json()
            assert status["fleet"]["events"] == 4 and status["fleet"]["center_seq"] == 3
            assert status["fleet"]["seconds"] >= 0
            page = await (await client.get("/", headers=auth)).text()
            tile = re.search(r'<div class="tile tone-idle fleet" id="fleet-lag">(.*?)</div>',
                             page)
            assert tile is not None
            assert '<p class="big">4</p><p>events not shipped yet</p>' in tile[1]
            metrics = samples(await (await client.get("/metrics")).text())
            assert metrics["factory_fleet_lag_events"] == 4
            assert metrics["factory_fleet_lag_seconds"] >= 0
            assert metrics["factory_fleet_center_up"] == 1
            assert metrics["factory_fleet_refused"] == 0

            await shipper.ship_all()
            status = await (await client.get("/api/v1/status", headers=auth)).json()
            assert (status["fleet"]["events"], status["fleet"]["seconds"]) == (0, 0.0)
            assert samples(await (await client.get("/metrics")).text())[
                "factory_fleet_lag_events"] == 0
    finally:
        await shipper.close()
        await journal.close()


async def test_a_station_that_ships_nowhere_shows_no_fleet(tmp_path: Path,
                                                           config: StationConfig) -> None:
    journal = await open_journal(config.journal, config.station_id)
    try:
        async with TestClient(TestServer(make_app(config, journal),
                                         host="127.0.0.1")) as client:
            text = await (await client.get("/metrics")).text()
            assert "factory_fleet" not in text
    finally:
        await journal.close()


async def test_fleet_status_says_the_lag(tmp_path: Path,
                                         private_postgres: PrivatePostgres) -> None:
    url = private_postgres.new_database()
    path = station_config(tmp_path, "line-a", url)
    config = load(path)
    journal = await open_journal(config.journal, config.station_id)
    try:
        await journal.issue(req(2))
        shipper = Shipper(journal, "line-a", url)
        await shipper.ship_all()
        await shipper.close()
        await journal.issue(req(5))
    finally:
        await journal.close()
    out = run_cli(path, "fleet", "status")
    assert "this station (line-a): 5 events not shipped, oldest" in out.stdout
    assert "(center has up to event 2)" in out.stdout
    lag = json.loads(run_cli(path, "fleet", "status", "--json").stdout)["lag"]
    assert (lag["events"], lag["center_seq"], lag["refused"]) == (5, 2, "")
    assert lag["seconds"] >= 0
