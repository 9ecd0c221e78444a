"""The status snapshot, its event stream and who may see them, on a real aiohttp server over
a real journal: counts by window after known events, 401/403 problem bodies, open networks,
the token cookie, and events pushed on journal and fixture changes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from factory.config import StationConfig, load
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.journal.postgres import writer as pg_writer
from factory.journal.records import IssueRequest
from factory.journal.sqlite import writer
from factory.states import FixtureStatus
from factory.status import snapshot
from factory.status.snapshot import LiveSources
from factory.tokens import new_token, token_hash
from factory.web.app import make_app
from tests.conftest import CONFIG_TEXT, PRODUCT, Station, register_request, write_config


async def issue(journal: Journal, hardware_id: str) -> str:
    result = await journal.issue(IssueRequest(PRODUCT, "test", hardware_id=hardware_id))
    return result.ucis[0]


async def known_day(journal: Journal) -> dict[str, str]:
    """Three units and a station failure: one all the way, one failed twice, one voided."""
    a, b, c = [await issue(journal, f"02:00:00:00:00:0{i}") for i in (1, 2, 3)]
    for kind, state in (("written", None), ("verified", "verified"), ("labelled", "labelled"),
                        ("labelled", "labelled"), ("registered", "registered"),
                        ("preclaimed", "preclaimed")):
        await journal.record(a, kind, "test", {}, state=state)
    await journal.record(b, "failed", "test", {"reason": "gone"}, state="failed")
    await journal.record(b, "failed", "test", {"reason": "gone again"}, state="failed")
    await journal.void(c, "dropped on the floor", "test")
    await journal.note("fixture_failed", "fixture:f1", {"reason": "no identity"})
    return {"done": a, "failed": b, "voided": c}


async def test_snapshot_counts_units_once_per_counter(station: Station) -> None:
    ucis = await known_day(station.journal)
    resp = await station.client.get("/api/v1/status", headers=station.auth("viewer"))
    assert resp.status == 200
    snap = await resp.json()
    # the reprint and the second failure count once
    expected = {"issued": 3, "verified": 1, "labelled": 1, "checked": 0, "registered": 1,
                "preclaimed": 1, "failed": 2, "voided": 1}
    assert snap["counts"]["today"] == expected
    assert snap["counts"]["shift"] == expected
    assert snap["units_per_hour"] == 1
    assert snap["station"] == "test-station"
    newest = snap["units"][0]
    assert newest["uci"] == ucis["voided"] and newest["state"] == "voided"
    done = next(u for u in snap["units"] if u["uci"] == ucis["done"])
    assert [s["words"] for s in done["steps"]] == [
        "issued", "written", "verified", "labelled", "labelled", "registered", "pre-claimed"]
    assert done["product"] == "Acme Air Sensor" and "-" in done["human"]
    assert snap["upstream"]["pending"] == 0 and snap["attention"] == []


async def test_windows_count_from_their_start(journal: Journal,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    times = iter(["2024-05-01T05:00:00.000Z", "2024-05-01T07:00:00.000Z",
                  "2024-05-01T09:00:00.000Z"])
    stamp = lambda: next(times)  # noqa: E731
    monkeypatch.setattr(writer, "utc_now", stamp)
    monkeypatch.setattr(pg_writer, "utc_now", stamp)
    for i in range(3):  # one batch each, at the times above
        await issue(journal, f"02:00:00:00:01:0{i}")
    counts = await journal.count_events(
        {"issued": "issued", "voided": "voided"},
        {"night": "2024-05-01T00:00:00.000Z", "early": "2024-05-01T06:00:00.000Z",
         "late": "2024-05-01T08:00:00.000Z", "next": "2024-05-02T00:00:00.000Z"})
    assert counts == {"issued": {"night": 3, "early": 2, "late": 1, "next": 0},
                      "voided": {"night": 0, "early": 0, "late": 0, "next": 0}}


async def test_the_last_units_are_the_newest_touched(journal: Journal) -> None:
    ucis = [await issue(journal, f"02:00:00:00:02:{i:02}") for i in range(25)]
    await journal.record(ucis[0], "written", "test", {})
    recent = await journal.recent_units(20)
    assert [u.uci for u in recent] == [ucis[0], *reversed(ucis[5:])][:20]
    assert [e.kind for e in recent[0].events] == ["issued", "written"]


async def test_fixtures_printer_and_upstream_that_need_a_person(
        config: StationConfig, journal: Journal) -> None:
    failed = FixtureStatus("line-1", "/dev/ttyUSB0")
    failed.set("failed", "the unit stopped answering while writing", "plug the unit in again",
               "7KQ2M9XD3FHT0W5R")
    busy = FixtureStatus("line-2", "/dev/ttyUSB1")
    busy.set("verifying")
    live = LiveSources(fixtures=lambda: (failed, busy),
                       printer=SimpleNamespace(printer_state="unavailable",
                                               printer_reason="the queue is stopped"),
                       upstream=SimpleNamespace(last_error="401", refused="token revoked"))
    snap = await snapshot.build(config, journal, live, datetime.now(UTC), UTC)
    assert [(f["name"], f["words"], f["tone"]) for f in snap["fixtures"]] == [
        ("line-1", "FAILED", "stop"), ("line-2", "Verifying", "busy")]
    assert snap["fixtures"][0]["uci"] == "7KQ2-M9XD-3FHT-0W5R-W"
    sources = [a["source"] for a in snap["attention"]]
    assert sources == ["fixture:line-1", "printer", "upstream"]
    assert "stopped answering" in snap["attention"][0]["what"]
    assert snap["attention"][0]["action"] == "plug the unit in again"


async def test_without_a_token_the_page_and_api_answer_401_problems(station: Station) -> None:
    for path in ("/", "/api/v1/status", "/api/v1/status/events"):
        resp = await station.client.get(path)
        assert resp.status == 401
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        body = await resp.json()
        assert body["status"] == 401 and "/?token=" in body["detail"]
    device = await station.client.get("/api/v1/status", headers=station.auth("device"))
    assert device.status == 403
    assets = [await station.client.get(f"/static/{n}") for n in ("status.css", "status.js")]
    assert [a.status for a in assets] == [200, 200]  # the page's own files are not secret
    assert (await station.client.get("/static/../station.toml")).status == 404


async def test_a_token_given_once_is_kept_in_a_cookie(station: Station,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    client = station.client
    bad = await client.get("/?token=fst_not-a-token", allow_redirects=False)
    assert bad.status == 401 and "factory_status_token" not in bad.cookies
    resp = await client.get(f"/?token={station.tokens['viewer']}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    cookie = resp.cookies["factory_status_token"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    page = await client.get("/")  # the client's cookie jar sends it, as a browser does
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    text = await page.text()
    assert "test-station" in text and "Line OK" in text
    assert (await client.get("/api/v1/status")).status == 200
    device = await client.get(f"/?token={station.tokens['device']}", allow_redirects=False)
    assert device.status == 403
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "aiohttp.access")
    assert "GET /?token=(hidden)" in logged  # never the token itself
    assert station.tokens["viewer"] not in caplog.text


@pytest.fixture
async def open_station(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    config = load(write_config(tmp_path, CONFIG_TEXT + '\n[status]\nopen_networks = '
                                                       '["127.0.0.0/8"]\n'))
    journal = await open_journal(config.journal, config.station_id)
    try:
        async with TestClient(TestServer(make_app(config, journal),
                                         host="127.0.0.1")) as client:
            yield client
    finally:
        await journal.close()


async def test_open_networks_see_the_page_without_a_token(
        open_station: TestClient[Any, Any]) -> None:
    assert (await open_station.get("/")).status == 200
    assert (await open_station.get("/api/v1/status")).status == 200
    # Open to read, not to write: the API still wants its tokens.
    assert (await open_station.post("/api/v1/ucis", json={"product": PRODUCT})).status == 401


async def read_events(resp: ClientResponse, want: str = "status"
                      ) -> AsyncIterator[dict[str, Any]]:
    """The `want` events of a server-sent event stream, parsed."""
    kind = ""
    while line := (await resp.content.readline()).decode():
        if line.startswith("event: "):
            kind = line[7:].strip()
        elif line.startswith("data: ") and kind == want:
            yield json.loads(line[6:])


async def test_the_event_stream_pushes_journal_changes(station: Station) -> None:
    resp = await station.client.get("/api/v1/status/events", headers=station.auth("operator"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = aiter(read_events(resp))
    first = await anext(events)
    assert first["counts"]["today"]["issued"] == 0
    issued = await station.client.post("/api/v1/ucis", json={"product": PRODUCT},
                                       headers=station.auth("device"))
    assert issued.status == 201
    second = await anext(events)
    assert second["counts"]["today"]["issued"] == 1
    assert second["units"][0]["uci"] == (await issued.json())["uci"]
    await station.client.app.shutdown()  # the station stops: the open stream ends at once
    assert [e async for e in events] == []


async def test_the_pages_own_stream_sends_its_parts_as_the_page_renders_them(
        station: Station) -> None:
    viewer = station.auth("viewer")
    resp = await station.client.get("/api/v1/status/events?view=page", headers=viewer)
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = aiter(read_events(resp, "page"))
    first = await anext(events)
    page = await (await station.client.get("/", headers=viewer)).text()
    for name, part in first.items():
        assert f'id="{name}"' in page
        if name != "updated":  # the page's own snapshot may be a second younger
            assert part["html"] in page
    assert first["attention"]["class"] == "attention tone-ok"
    issued = await station.client.post("/api/v1/ucis", json={"product": PRODUCT},
                                       headers=station.auth("device"))
    second = await anext(events)
    assert ('<tr class="count-issued"><th>Issued</th><td class="shift">1</td>'
            '<td class="today">1</td></tr>') in second["counts"]["html"]
    assert (await issued.json())["human"] in second["units"]["html"]
    head = await station.client.head("/api/v1/status/events?view=page", headers=viewer)
    assert head.status == 200 and head.headers["Content-Type"] == "text/event-stream"


async def test_the_event_stream_pushes_fixture_changes(config: StationConfig,
                                                       journal: Journal) -> None:
    fixture = FixtureStatus("line-1", "/dev/ttyUSB0")
    fixture.set("waiting")
    app = make_app(config, journal, live=LiveSources(fixtures=lambda: (fixture,)))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        tokens = await _viewer(journal)
        resp = await client.get("/api/v1/status/events", headers=tokens)
        events = aiter(read_events(resp))
        assert (await anext(events))["fixtures"][0]["state"] == "waiting"
        fixture.set("writing", uci="7KQ2M9XD3FHT0W5R")  # in memory only: no journal write
        assert (await anext(events))["fixtures"][0]["words"] == "Writing"


async def _viewer(journal: Journal) -> dict[str, str]:
    from factory.tokens import new_token, token_hash
    token = new_token()
    await journal.add_token("screen", "viewer", token_hash(token))
    return {"Authorization": f"Bearer {token}"}


async def test_units_left_unfinished_and_refused_ones_need_a_person(
        config: StationConfig, journal: Journal) -> None:
    """A unit written but never verified (the station was killed mid-unit, and the unit was
    taken away) is shown once no fixture can still be on it; so are refused registrations."""
    left = await issue(journal, "02:00:00:00:03:01")
    await journal.record(left, "written", "fixture:f1", {}, state="written")
    refused = await issue(journal, "02:00:00:00:03:02")
    await journal.record(refused, "verified", "fixture:f1", {}, state="verified",
                         enqueue=register_request(refused))
    [entry] = await journal.outbox_due(now=1e12)
    await journal.record(refused, "register_failed", "upstream", {"reason": "bad product"},
                         state="failed", settles=(entry.id, "failed"))
    live = LiveSources(fixtures=lambda: ())
    now = datetime.now(UTC)
    soon = await snapshot.build(config, journal, live, now, UTC)
    assert [a["source"] for a in soon["attention"]] == ["upstream"]
    assert "refused 1 unit" in soon["attention"][0]["what"]
    later = await snapshot.build(config, journal, live, now + snapshot.UNFINISHED_AFTER, UTC)
    assert [a["source"] for a in later["attention"]] == ["upstream", "units"]
    assert f"1 unit written but never verified ({left})" in later["attention"][1]["what"]
    assert "plug each in again" in later["attention"][1]["action"]


async def test_a_revoked_tokens_open_stream_is_closed(station: Station) -> None:
    """B4 of the outside probe: a stream opened with a token went on after the token was
    revoked (22 events in 25 s). It ends within a few seconds; a new one is refused."""
    name, token = "screen-1", new_token()
    await station.journal.add_token(name, "viewer", token_hash(token))
    viewer = {"Authorization": f"Bearer {token}"}
    resp = await station.client.get("/api/v1/status/events", headers=viewer)
    assert resp.status == 200
    events = aiter(read_events(resp))
    await anext(events)
    await station.journal.revoke_token(name)
    async with asyncio.timeout(15):  # a hang guard: without the fix the stream never ends
        while True:
            issued = await station.client.post("/api/v1/ucis", json={"product": PRODUCT},
                                               headers=station.auth("device"))
            assert issued.status == 201  # changes keep coming, so events would too
            try:
                async with asyncio.timeout(0.5):
                    await anext(events)
            except StopAsyncIteration:
                break  # the station ended the stream
            except TimeoutError:
                continue
    again = await station.client.get("/api/v1/status/events", headers=viewer)
    assert again.status == 401
    # Another screen's stream, its token still good, is not touched.
    other = await station.client.get("/api/v1/status/events", headers=station.auth("viewer"))
    assert other.status == 200
    assert "counts" in await anext(aiter(read_events(other)))
