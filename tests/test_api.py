"""The HTTP API on a real server: issuing, reading, voiding, roles, and bad input."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from factory import uci as uci_codec
from factory.journal.sqlite import SQLiteJournal
from factory.web import auth
from factory.web.app import make_app
from factory.web.keys import TOKENS
from tests.conftest import OTHER_PRODUCT, PRODUCT, Station

PROBLEM = "application/problem+json"


async def post(station: Station, path: str, body: Any = None, role: str | None = "device",
               raw: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    hdrs = dict(station.auth(role)) if role else {}  # type: ignore[arg-type]
    hdrs.update(headers or {})
    if raw is not None:
        return await station.client.post(path, data=raw, headers=hdrs)
    return await station.client.post(path, json=body, headers=hdrs)


async def test_issue_one_and_read_it_back(station: Station) -> None:
    resp = await post(station, "/api/v1/ucis", {"product": PRODUCT})
    assert resp.status == 201
    body = await resp.json()
    assert uci_codec.parse(body["uci"]) == body["uci"]
    assert body["human"] == uci_codec.human(body["uci"])
    assert resp.headers["Location"] == f"/api/v1/units/{body['uci']}"

    # Any parseable form finds the unit.
    for form in (body["uci"], body["human"], body["human"].lower().replace("-", " ")):
        got = await station.client.get(f"/api/v1/units/{form}", headers=station.auth("viewer"))
        assert got.status == 200
        unit = await got.json()
        assert unit["uci"] == body["uci"] and unit["state"] == "issued"
        assert [e["kind"] for e in unit["events"]] == ["issued"]
        assert unit["events"][0]["actor"] == "token:test-device"


async def test_hardware_id_is_normalised_and_idempotent(station: Station) -> None:
    first = await post(station, "/api/v1/ucis", {"product": PRODUCT,
                                                 "hardware_id": "7c:df:a1:00:03:3b"})
    again = await post(station, "/api/v1/ucis", {"product": PRODUCT,
                                                 "hardware_id": "7CDFA100033B"})
    assert (first.status, again.status) == (201, 200)
    a, b = await first.json(), await again.json()
    assert a["uci"] == b["uci"] and a["hardware_id"] == "7CDFA100033B"


async def test_fifty_racing_requests_for_one_hardware_id_get_one_uci(station: Station) -> None:
    body = {"product": PRODUCT, "hardware_id": "ESP32-CHIP-0042"}
    responses = await asyncio.gather(*(post(station, "/api/v1/ucis", body) for _ in range(50)))
    statuses = sorted(r.status for r in responses)
    ucis = {(await r.json())["uci"] for r in responses}
    assert len(ucis) == 1
    assert statuses == [200] * 49 + [201]
    units, _ = await station.journal.units(limit=100)
    assert [u.uci for u in units] == list(ucis)


async def test_batch_and_idempotency_key(station: Station) -> None:
    key = {"Idempotency-Key": "run-2026-11-23-a"}
    first = await post(station, "/api/v1/ucis", {"product": PRODUCT, "count": 250},
                       headers=key)
    again = await post(station, "/api/v1/ucis", {"product": PRODUCT, "count": 250},
                       headers=key)
    assert (first.status, again.status) == (201, 200)
    a, b = await first.json(), await again.json()
    assert a["count"] == 250 and len(set(a["ucis"])) == 250 and a["ucis"] == b["ucis"]
    clash = await post(station, "/api/v1/ucis", {"product": PRODUCT, "count": 3}, headers=key)
    assert clash.status == 422
    assert "Idempotency-Key" in (await clash.json())["detail"]
    assert (await station.journal.stats()) == {"issued": 250}


async def test_void_with_reason(station: Station) -> None:
    uci = (await (await post(station, "/api/v1/ucis", {"product": PRODUCT})).json())["uci"]
    resp = await post(station, f"/api/v1/units/{uci_codec.human(uci)}/void",
                      {"reason": "label misprinted"}, role="operator")
    assert resp.status == 200
    unit = await resp.json()
    assert unit["state"] == "voided"
    assert unit["events"][-1]["data"] == {"reason": "label misprinted"}
    again = await post(station, f"/api/v1/units/{uci}/void", {"reason": "x"}, role="operator")
    assert again.status == 409
    listed = await station.client.get("/api/v1/units?state=voided",
                                      headers=station.auth("operator"))
    assert [u["uci"] for u in (await listed.json())["units"]] == [uci]


async def test_list_units_pages(station: Station) -> None:
    made = (await (await post(station, "/api/v1/ucis",
                              {"product": OTHER_PRODUCT, "count": 5})).json())["ucis"]
    await post(station, "/api/v1/ucis", {"product": PRODUCT})
    seen: list[str] = []
    url = f"/api/v1/units?product={OTHER_PRODUCT}&limit=2"
    cursor = None
    while True:
        page = await (await station.client.get(
            url + (f"&cursor={cursor}" if cursor else ""),
            headers=station.auth("viewer"))).json()
        seen += [u["uci"] for u in page["units"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_healthz_and_openapi_are_open(station: Station) -> None:
    health = await station.client.get("/healthz")
    assert health.status == 200 and (await health.json())["station"] == "test-station"
    doc = await station.client.get("/api/v1/openapi.json")
    assert (await doc.json())["openapi"] == "3.1.0"


# Roles, tokens and which routes are open: tests/test_security_routes.py (every route,
# every credential, checked against the OpenAPI document).


async def test_revoked_token_is_refused(station: Station) -> None:
    assert (await post(station, "/api/v1/ucis", {"product": PRODUCT})).status == 201
    await station.journal.revoke_token("test-device")
    assert auth.REFRESH_SECONDS <= 5
    station.client.app[TOKENS]._loaded_at = float("-inf")  # skip the refresh delay
    resp = await post(station, "/api/v1/ucis", {"product": PRODUCT})
    assert resp.status == 401


# -- bad input ------------------------------------------------------------------------------

GOOD_UCI = "7KQ2M9XD3FHT0W5R"
BAD_REQUESTS: list[tuple[str, str, str, Any, str | None, dict[str, str], int, str]] = [
    # (name, method, path, json-or-raw, role, headers, status, text in detail)
    ("malformed JSON", "POST", "/api/v1/ucis", b'{"product": ', "device", {}, 400,
     "not valid JSON"),
    ("empty body", "POST", "/api/v1/ucis", b"", "device", {}, 400, "empty"),
    ("not UTF-8", "POST", "/api/v1/ucis", b'{"product": "\xff"}', "device", {}, 400, "UTF-8"),
    ("array body", "POST", "/api/v1/ucis", [PRODUCT], "device", {}, 422, "JSON object"),
    ("missing product", "POST", "/api/v1/ucis", {}, "device", {}, 422, "product: is required"),
    ("product wrong type", "POST", "/api/v1/ucis", {"product": 7}, "device", {}, 422,
     "product: must be a string, got a number"),
    ("unknown product", "POST", "/api/v1/ucis", {"product": "NOPE"}, "device", {}, 422,
     "'NOPE' is not a product of this station"),
    ("unknown field", "POST", "/api/v1/ucis", {"product": PRODUCT, "colour": "red"}, "device",
     {}, 422, "colour: is not a field"),
    ("count as string", "POST", "/api/v1/ucis", {"product": PRODUCT, "count": "5"}, "device",
     {}, 422, "count: must be an integer, got a string"),
    ("count as bool", "POST", "/api/v1/ucis", {"product": PRODUCT, "count": True}, "device",
     {}, 422, "got a boolean"),
    ("count zero", "POST", "/api/v1/ucis", {"product": PRODUCT, "count": 0}, "device", {}, 422,
     "between 1 and 10000"),
    ("count too big", "POST", "/api/v1/ucis", {"product": PRODUCT, "count": 10001}, "device",
     {}, 422, "between 1 and 10000"),
    ("hardware id and count", "POST", "/api/v1/ucis",
     {"product": PRODUCT, "count": 2, "hardware_id": "AABBCCDDEEFF"}, "device", {}, 422,
     "names one unit"),
    ("bad hardware id", "POST", "/api/v1/ucis", {"product": PRODUCT, "hardware_id": "a b;rm"},
     "device", {}, 422, "hardware_id: a hardware id is a MAC"),
    ("hardware id wrong type", "POST", "/api/v1/ucis", {"product": PRODUCT, "hardware_id": 5},
     "device", {}, 422, "must be a string"),
    ("bad idempotency key", "POST", "/api/v1/ucis", {"product": PRODUCT}, "device",
     {"Idempotency-Key": "has space"}, 422, "Idempotency-Key"),
    ("oversize body", "POST", "/api/v1/ucis", b'{"product": "' + b"x" * 5000 + b'"}', "device",
     {}, 413, "Maximum request body size 4096"),
    ("no token", "POST", "/api/v1/ucis", {"product": PRODUCT}, None, {}, 401,
     "needs a bearer token"),
    ("wrong token", "POST", "/api/v1/ucis", {"product": PRODUCT}, None,
     {"Authorization": "Bearer fst_not-a-real-token"}, 401, "unknown or revoked"),
    ("not bearer", "POST", "/api/v1/ucis", {"product": PRODUCT}, None,
     {"Authorization": "Basic dXNlcjpwYXNz"}, 401, "must be 'Bearer <token>'"),
    ("wrong role", "POST", "/api/v1/ucis", {"product": PRODUCT}, "viewer", {}, 403,
     "a viewer token may not issue"),
    ("short UCI", "GET", "/api/v1/units/7KQ2-M9XD", None, "viewer", {}, 400, "got 8"),
    ("wrong check symbol", "GET", "/api/v1/units/7KQ2-M9XD-3FHT-0W5R-X", None, "viewer", {},
     400, "wrong check symbol 'X'"),
    ("bad symbol", "GET", "/api/v1/units/7KQ2-M9XD-3FHT-0W5U", None, "viewer", {}, 400,
     "'U' at position 16"),
    ("unknown unit", "GET", f"/api/v1/units/{GOOD_UCI}", None, "viewer", {}, 404,
     "no unit with UCI"),
    ("bad state filter", "GET", "/api/v1/units?state=lost", None, "viewer", {}, 422,
     "state: must be one of"),
    ("bad limit", "GET", "/api/v1/units?limit=0", None, "viewer", {}, 422,
     "limit: must be an integer from 1 to 1000"),
    ("bad cursor", "GET", "/api/v1/units?cursor=abc", None, "viewer", {}, 422, "cursor"),
    ("unknown query", "GET", "/api/v1/units?sort=x", None, "viewer", {}, 400, "'sort'"),
    ("void no reason", "POST", f"/api/v1/units/{GOOD_UCI}/void", {}, "operator", {}, 422,
     "reason: is required"),
    ("void blank reason", "POST", f"/api/v1/units/{GOOD_UCI}/void", {"reason": "  "},
     "operator", {}, 422, "reason: is required"),
    ("void unknown unit", "POST", f"/api/v1/units/{GOOD_UCI}/void", {"reason": "x"},
     "operator", {}, 404, "no unit with UCI"),
    ("no such route", "GET", "/api/v2/nothing", None, None, {}, 404, "no route"),
    ("wrong method", "DELETE", "/api/v1/ucis", None, "operator", {}, 405,
     "DELETE is not allowed"),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "role", "headers", "status",
                          "text"), BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS])
async def test_bad_input_gets_a_problem_body(station: Station, name: str, method: str,
                                             path: str, body: Any, role: str | None,
                                             headers: dict[str, str], status: int,
                                             text: str) -> None:
    hdrs = dict(station.auth(role)) if role else {}  # type: ignore[arg-type]
    hdrs.update(headers)
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    resp = await station.client.request(method, path, headers=hdrs, **kwargs)
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    problem = await resp.json(content_type=PROBLEM)
    assert problem["status"] == status
    assert problem["type"].startswith("urn:factory-station:problem:")
    assert problem["title"]
    assert text in problem["detail"], problem["detail"]
    if status == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await station.journal.stats()).get("issued", 0) == 0  # nothing was issued


@pytest.mark.parametrize("journal_backend", ["sqlite"], indirect=True)  # SQLite's own size limit
async def test_a_full_journal_refuses_with_503_and_the_station_goes_on(station: Station) -> None:
    """SQLITE_FULL (a real one: the file may not grow) refuses the request, stores nothing."""
    assert isinstance(station.journal, SQLiteJournal)  # SQLite's own size limit
    writer = station.journal._writer_conn
    async with writer.execute("PRAGMA page_count") as cur:
        pages = (await cur.fetchone())[0]  # type: ignore[index]
    await writer.execute(f"PRAGMA max_page_count = {pages}")
    full = await post(station, "/api/v1/ucis", {"product": PRODUCT, "count": 5000})
    assert full.status == 503
    assert full.headers["Retry-After"]
    problem = await full.json(content_type=PROBLEM)
    assert "nothing was recorded" in problem["detail"]
    assert await station.journal.stats() == {}

    await writer.execute("PRAGMA max_page_count = 1073741823")
    ok = await post(station, "/api/v1/ucis", {"product": PRODUCT, "count": 5000})
    assert ok.status == 201
    assert await station.journal.stats() == {"issued": 5000}
    assert (await station.journal.verify()).ok


# B6 of the outside probe: bodies within the size limit that Python's JSON parser cannot take
# (an integer past its 4,300-digit limit, nesting past its recursion limit) were 500s.
PARSER_LIMITS = [
    ("5000-digit count", "/api/v1/ucis",
     b'{"product": "%s", "count": 1%s}' % (PRODUCT.encode(), b"0" * 5000), "cannot be read"),
    ("array nested 100,000 deep", "/api/v1/ucis", b"[" * 100_000 + b"]" * 100_000,
     "nested too deep"),
    ("object nested 50,000 deep", f"/api/v1/units/{GOOD_UCI}/void",
     b'{"reason": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001, "nested too deep"),
]


@pytest.mark.parametrize(("name", "path", "body", "text"), PARSER_LIMITS,
                         ids=[r[0] for r in PARSER_LIMITS])
async def test_a_body_past_the_json_parsers_limits_is_a_400(
        station: Station, name: str, path: str, body: bytes, text: str) -> None:
    config = dataclasses.replace(station.config, max_body_bytes=1024 * 1024)
    async with TestClient(TestServer(make_app(config, station.journal),
                                     host="127.0.0.1")) as client:
        resp = await client.post(path, data=body, headers=station.auth("operator"))
        assert resp.status == 400, await resp.text()
        problem = await resp.json(content_type=PROBLEM)
        assert text in problem["detail"], problem["detail"]
        # The station goes on: a good request right after is served.
        ok = await client.post("/api/v1/ucis", json={"product": PRODUCT},
                               headers=station.auth("operator"))
        assert ok.status == 201


async def test_a_bearer_token_that_is_not_utf8_is_a_401(station: Station) -> None:
    """B6: `Authorization: Bearer` with a byte that is not UTF-8 was a 500 (hashing the
    token); it is an unknown token. Sent on a raw socket: clients encode headers for us."""
    server = station.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /api/v1/ucis HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer fst_\xff\xfe\r\nContent-Length: 2\r\n"
                 b"Connection: close\r\n\r\n{}")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert b"unknown or revoked" in body


async def test_a_void_with_a_lone_surrogate_fails_alone(station: Station) -> None:
    """B5: a reason with a lone surrogate (valid JSON, "\\udc80") once failed its whole group
    commit: the void and the unrelated issues beside it all got a 503."""
    uci = (await (await post(station, "/api/v1/ucis", {"product": PRODUCT})).json())["uci"]
    raw = b'{"reason": "bad \\udc80 unit"}'
    headers = {"Content-Type": "application/json"}
    issues = [post(station, "/api/v1/ucis", {"product": PRODUCT}) for _ in range(30)]
    void = post(station, f"/api/v1/units/{uci}/void", role="operator", raw=raw, headers=headers)
    answers = await asyncio.gather(*issues[:15], void, *issues[15:])
    voided = answers.pop(15)
    assert [a.status for a in answers] == [201] * 30
    assert voided.status == 422 and voided.content_type == PROBLEM
    problem = await voided.json()
    assert problem["field"] == "reason"
    assert problem["detail"] == r"reason: contains a lone surrogate (\udc80); send valid Unicode"
    assert (await station.journal.unit(uci)).state == "issued"
