"""POST /ioto/serialize, shaped like the Embedthis Ioto agent's factory serialization call."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import json5
from aiohttp.test_utils import TestClient, TestServer

from factory.config import load
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.web.app import make_app
from tests.conftest import CONFIG_TEXT, PRODUCT, Station, write_config

# What the agent posts: its device section from device.json5, without an id yet.
DEVICE_SECTION = {"product": PRODUCT, "name": "Acme Air Sensor", "model": "AQ-100",
                  "description": "Indoor air quality sensor"}


async def test_agent_request_gets_an_id(station: Station) -> None:
    resp = await station.client.post("/ioto/serialize", json=DEVICE_SECTION)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    text = await resp.text()
    reply = json5.loads(text)  # the agent parses replies with a JSON5 parser
    assert list(reply) == ["id"]
    unit = await station.journal.unit(reply["id"])
    assert unit.product == PRODUCT and unit.state == "issued"
    assert unit.events[0].actor == "ioto@127.0.0.1"


async def test_agent_retry_with_mac_gets_the_same_id(station: Station) -> None:
    body = {**DEVICE_SECTION, "mac": "7c:df:a1:00:03:3b"}
    answers = [await station.client.post("/ioto/serialize", json=body) for _ in range(2)]
    # The agent takes nothing but 200: a repeat is never a 201 (or a 200 the first time).
    assert [a.status for a in answers] == [200, 200]
    first, again = [await a.json() for a in answers]
    assert first == again
    assert (await station.journal.unit(first["id"])).hardware_id == "7CDFA100033B"


async def test_unknown_product_is_refused(station: Station) -> None:
    resp = await station.client.post("/ioto/serialize", json={**DEVICE_SECTION,
                                                              "product": "01NOTOURS"})
    assert resp.status == 422
    problem = await resp.json(content_type="application/problem+json")
    assert "not a product of this station" in problem["detail"]
    assert await station.journal.stats() == {}


async def _serve(tmp_path: Path, networks: str) -> tuple[TestServer, Journal]:
    config = load(write_config(tmp_path, CONFIG_TEXT.replace(
        'networks = ["127.0.0.0/8", "::1/128"]', f"networks = {networks}")))
    journal = await open_journal(config.journal, config.station_id)
    server = TestServer(make_app(config, journal), host="127.0.0.1")
    await server.start_server()
    return server, journal


async def test_other_networks_are_refused(tmp_path: Path) -> None:
    server, journal = await _serve(tmp_path, '["10.20.30.0/24"]')
    try:
        async with TestClient(server) as client:
            resp = await client.post("/ioto/serialize", json=DEVICE_SECTION)
            assert resp.status == 403
            problem = await resp.json(content_type="application/problem+json")
            assert "127.0.0.1 is not on a network allowed to serialize" in problem["detail"]
        assert await journal.stats() == {}
    finally:
        await journal.close()


async def test_only_the_listed_address_is_allowed(tmp_path: Path) -> None:
    """127.0.0.1/32 is allowed; the same host calling from 127.0.0.2 is not."""
    server, journal = await _serve(tmp_path, '["127.0.0.1/32"]')
    url = f"http://127.0.0.1:{server.port}/ioto/serialize"
    try:
        for source, status in (("127.0.0.1", 200), ("127.0.0.2", 403)):
            connector = aiohttp.TCPConnector(local_addr=(source, 0))
            async with aiohttp.ClientSession(connector=connector) as session, \
                    session.post(url, json=DEVICE_SECTION) as resp:
                assert resp.status == status, source
    finally:
        await server.close()
        await journal.close()
