"""`factory fleet serve`: the real command serving the fleet page over real HTTP, its data a
private PostgreSQL center that two stations shipped to, its tokens station A's journal."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast
from urllib.parse import quote

import aiohttp
import pytest

from factory import uci as uci_codec
from factory.fleet.identity import FleetIssuing
from factory.fleet.shipper import Shipper
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.journal.records import IssueRequest, Role
from factory.tokens import new_token, token_hash
from tests.conftest import FACTORY, PRODUCT, ROOT
from tests.cups import free_port
from tests.postgres import PrivatePostgres
from tests.test_fleet import station_config

PROBLEM = "application/problem+json"


def hw(hardware_id: str) -> IssueRequest:
    return IssueRequest(product=PRODUCT, actor="test", hardware_id=hardware_id)


async def ship(journal: Journal, station: str, url: str) -> None:
    shipper = Shipper(journal, station, url)
    try:
        await shipper.report()
        await shipper.ship_all()
        await shipper.report()
    finally:
        await shipper.close()


@pytest.fixture
async def fleet(tmp_path: Path, private_postgres: PrivatePostgres) -> AsyncIterator[
        tuple[str, dict[str, str], dict[str, str]]]:
    """A fleet page on its own port: (its address, tokens by role, the fleet's UCIs)."""
    url = private_postgres.new_database()
    config = station_config(tmp_path / "a", "line-a", url)
    a = await open_journal(tmp_path / "a" / "journal.sqlite", "line-a")
    b = await open_journal(tmp_path / "b.sqlite", "line-b")
    tokens = {"viewer": new_token(), "device": new_token()}
    at_a, at_b = FleetIssuing(a, url), FleetIssuing(b, url)
    try:
        for role, token in tokens.items():
            await a.add_token(f"t-{role}", cast(Role, role), token_hash(token))
        retested = (await at_a.issue(hw("AABBCCDDEE01"))).ucis[0]
        await a.record(retested, "failed", "test", {"reason": "no answer"}, state="failed")
        await ship(a, "line-a", url)
        assert (await at_b.issue(hw("AABBCCDDEE01"))).ucis == [retested]
        await b.record(retested, "written", "test", {}, state="written")
        twice_a = (await a.issue(hw("AABBCCDDEE02"))).ucis[0]  # both issued offline
        twice_b = (await b.issue(hw("AABBCCDDEE02"))).ucis[0]
        await ship(a, "line-a", url)
        await ship(b, "line-b", url)
        await b.issue(IssueRequest(product=PRODUCT, actor="test", count=3))  # not shipped
        await ship_head_only(b, "line-b", url)
    finally:
        await at_a.close()
        await at_b.close()
        await a.close()
        await b.close()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FACTORY_CONFIG", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*FACTORY, "-c", str(config), "fleet", "serve", "--listen",
                                 f"127.0.0.1:{port}"], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                assert proc.poll() is None, log.read_text()
                try:
                    async with session.get(f"{base}/api/v1/fleet"):
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        yield base, tokens, {"retested": retested, "twice_a": twice_a, "twice_b": twice_b}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


async def ship_head_only(journal: Journal, station: str, url: str) -> None:
    """Tell the center how far the station's journal goes without shipping it (its lag)."""
    shipper = Shipper(journal, station, url)
    try:
        await shipper.report()
    finally:
        await shipper.close()


async def get(url: str, token: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(
            url, headers=headers, allow_redirects=False) as resp:
        return resp.status, resp.content_type, await resp.text()


async def test_the_fleet_page_shows_every_station_and_finds_a_unit_anywhere(fleet) -> None:
    base, tokens, ucis = fleet
    viewer = tokens["viewer"]
    status, kind, page = await get(f"{base}/", viewer)
    assert status == 200 and kind == "text/html"
    row_a = re.search(r'<tr class="station tone-stop" data-station="line-a">(.*?)</tr>', page)
    row_b = re.search(r'<tr class="station tone-stop" data-station="line-b">(.*?)</tr>', page)
    assert row_a is not None and row_b is not None
    # lag, units today, failed today, open conflicts
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row_a[1])[:4] == ["caught up", "2", "1", "1"]
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row_b[1])[0].startswith("3 events, oldest")
    assert (f"{uci_codec.human(ucis['twice_b'])} at line-b and "
            f"{uci_codec.human(ucis['twice_a'])} at line-a") in page

    retested = ucis["retested"]
    claim_url = f"https://claim.example.com/c/{uci_codec.human(retested).lower()}"
    for query in (claim_url, uci_codec.human(retested).lower(), retested,
                  "aa-bb-cc-dd-ee-01"):
        status, kind, body = await get(f"{base}/api/v1/fleet/units?q={quote(query)}", viewer)
        assert status == 200, body
        found = json.loads(body)["units"]
        assert [u["uci"] for u in found] == [retested], query
        assert [(e["station"], e["kind"]) for e in found[0]["events"]] == [
            ("line-a", "issued"), ("line-a", "failed"), ("line-b", "issued"),
            ("line-b", "written")]
    status, _, page = await get(f"{base}/?q={quote(claim_url)}", viewer)
    assert status == 200
    assert page.count('<tr class="event kind-') == 4 and "line-b" in page


async def test_a_bad_query_is_a_problem_and_no_token_is_401(fleet) -> None:
    base, tokens, _ = fleet
    for query in ("%%%not a unit%%%", "x" * 400, ""):
        status, kind, body = await get(f"{base}/api/v1/fleet/units?q={quote(query)}",
                                       tokens["viewer"])
        problem = json.loads(body)
        assert (status, kind, problem["status"]) == (400, PROBLEM, 400), body
        assert problem["type"].endswith("bad-request") and problem["detail"].startswith("q: ")
    status, kind, page = await get(f"{base}/?q={quote('%%%')}", tokens["viewer"])
    assert (status, kind) == (400, "text/html") and "not a UCI" in page
    for path in ("/", "/api/v1/fleet", "/api/v1/fleet/units?q=AABBCCDDEE01"):
        status, kind, body = await get(f"{base}{path}")
        assert (status, kind) == (401, PROBLEM) and json.loads(body)["status"] == 401
    status, kind, _ = await get(f"{base}/api/v1/fleet", tokens["device"])
    assert (status, kind) == (403, PROBLEM)
    # unsafe: a jar that keeps cookies of an IP address (127.0.0.1), as a browser does
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{base}/?token={tokens['viewer']}",
                               allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/"
        async with session.get(f"{base}/") as resp:  # the cookie lets the screen in
            assert resp.status == 200
