"""Schemathesis against the station's and the reference registry's OpenAPI documents, with
real servers on 127.0.0.1: no 5xx, answers as documented, every error a problem body.

FUZZ_EXAMPLES sets the cases per operation and mode (default 30, seeded: CI sends the same
ones every run); scripts/fuzz_api.py runs many more against real processes.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.journal.records import IssueRequest
from factory.web.app import make_app
from factory.web.openapi import DOCUMENT
from tests.api_fuzz import fuzz, table
from tests.conftest import PRODUCT, Station
from tests.test_upstream_http import Registry, registry

__all__ = ["registry"]  # the fixture, imported for this file's tests

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
REGISTRY_DOC = Path(__file__).resolve().parent.parent / "docs" / "upstream-http.openapi.json"


def station_schema(products: list[str]) -> schemathesis.BaseSchema:
    """The station's own document, told which products this station knows (a static document
    cannot), so positive cases issue UCIs instead of all being refused as unknown products.
    The event stream never ends: it is left out."""
    document = copy.deepcopy(DOCUMENT)
    for path in ("/api/v1/ucis", "/ioto/serialize"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        body["schema"]["properties"]["product"]["enum"] = products
    return schemathesis.openapi.from_dict(document).exclude(path="/api/v1/status/events")


async def test_the_station_api_holds_up_to_schemathesis(station: Station) -> None:
    schema = station_schema([p.id for p in station.config.products])
    outcomes = await asyncio.to_thread(
        fuzz, schema, str(station.client.make_url("")).rstrip("/"),
        lambda operation: station.tokens["operator"], examples=EXAMPLES)
    print(table(outcomes))
    failures = {o.operation: list(o.failures.values()) for o in outcomes if o.failures}
    assert not failures, "\n\n".join(r for reports in failures.values() for r in reports)
    by_label = {o.operation: o for o in outcomes}
    # The cases got through: UCIs were issued and units listed, not everything refused.
    assert by_label["POST /api/v1/ucis"].statuses.get(201, 0) > 0
    assert by_label["GET /api/v1/units"].statuses.get(200, 0) > 0
    assert by_label["POST /api/v1/ucis"].total >= EXAMPLES


async def test_the_registry_api_holds_up_to_schemathesis(registry: Registry) -> None:
    schema = schemathesis.openapi.from_path(REGISTRY_DOC)

    def token_for(operation: schemathesis.APIOperation) -> str:
        return registry.account_token if operation.path.startswith("/v1/claims") \
            else registry.product_token

    outcomes = await asyncio.to_thread(fuzz, schema, registry.url.rstrip("/"), token_for,
                                       examples=EXAMPLES)
    print(table(outcomes))
    failures = [r for o in outcomes for r in o.failures.values()]
    assert not failures, "\n\n".join(failures)
    by_label = {o.operation: o for o in outcomes}
    assert by_label["POST /v1/devices"].statuses.get(201, 0) > 0
    assert all(o.total >= EXAMPLES for o in outcomes)


@pytest.mark.parametrize("query", ["limit=%C2%B2", "limit=" + "9" * 5000, "cursor=%D9%A1%D9%A2",
                                   "cursor=-1", "limit=%EF%BC%95"])
async def test_a_number_that_is_not_plain_ascii_digits_is_a_422(station: Station,
                                                                query: str) -> None:
    # '²' passes str.isdigit() but not int(); 5000 digits pass neither int() limit: both
    # were 500s. Arabic-Indic and full-width digits were taken as numbers.
    async with station.client.get(f"/api/v1/units?{query}",
                                  headers=station.auth("viewer")) as resp:
        assert resp.status == 422, await resp.text()
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["field"] == query.split("=")[0]


async def test_an_ioto_retry_with_a_null_hardware_id_and_a_mac_gets_the_same_id(
        station: Station) -> None:
    # Found by schemathesis: a null hardware_id hid the mac, so each retry got a new UCI.
    body = {"product": PRODUCT, "hardware_id": None, "mac": "7c:df:a1:00:03:3c"}
    first = await (await station.client.post("/ioto/serialize", json=body)).json()
    again = await (await station.client.post("/ioto/serialize", json=body)).json()
    assert first == again
    assert (await station.journal.unit(first["id"])).hardware_id == "7CDFA100033C"


# The shapes of the outside probe's 500s (B6), kept in the fuzzing so the class stays covered:
# JSON Python's parser refuses past its limits (integers of thousands of digits, nesting past
# the recursion limit), bodies that are not UTF-8, and bearer tokens with bytes that are not.
def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a": ' * depth + b"1" + b"}" * depth


def _with_surrogate(field: str, surrogate: str, text: str) -> bytes:
    """A body whose `field` (or, for "(name)", a field's name) holds a lone surrogate: valid
    JSON (json.dumps writes it as a \\udXXX escape) that UTF-8 cannot encode (B5)."""
    body: dict[str, Any] = {} if field == "reason" else {"product": PRODUCT}
    if field == "(name)":
        body[text + surrogate] = text
    else:
        body[field] = text + surrogate + text
    return json.dumps(body).encode()


lone_surrogates = st.builds(
    _with_surrogate, st.sampled_from(["reason", "product", "hardware_id", "mac", "(name)"]),
    st.integers(0xD800, 0xDFFF).map(chr), st.text(max_size=8))

hostile_bodies = st.one_of(
    lone_surrogates,
    st.integers(4_301, 20_000).map(lambda n: b'{"product": "%s", "count": 1%s}'
                                   % (PRODUCT.encode(), b"0" * n)),
    st.integers(4_301, 20_000).map(lambda n: b'{"reason": 1%s}' % (b"0" * n)),
    st.builds(_nested, st.integers(1_500, 150_000), st.sampled_from(["array", "object"])),
    st.binary(min_size=1, max_size=64).map(lambda raw: b'{"reason": "' + raw + b'"}'),
)
# {uci}: a unit issued for the case, so a void reaches the journal's writer.
STATION_ROUTES = ["/api/v1/ucis", "/api/v1/units/{uci}/void", "/ioto/serialize"]


async def _raw(host: str, port: int, head: bytes, body: bytes) -> bytes:
    """Status line of a request sent byte for byte (no client re-encodes it)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                     + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    return answer.split(b"\r\n", 1)[0]


@pytest.fixture
async def roomy_station(station: Station) -> AsyncIterator[TestClient[Any, Any]]:
    """The station with the default 1 MiB body limit (the test config's is 4 KiB), so the
    bodies reach the parser."""
    config = dataclasses.replace(station.config, max_body_bytes=1024 * 1024)
    async with TestClient(TestServer(make_app(config, station.journal),
                                     host="127.0.0.1")) as client:
        yield client


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(STATION_ROUTES), body=hostile_bodies,
       token=st.one_of(st.none(), st.binary(min_size=1, max_size=16)))
async def test_hostile_shapes_get_a_4xx_from_the_station(
        station: Station, roomy_station: TestClient[Any, Any], route: str, body: bytes,
        token: bytes | None) -> None:
    server = roomy_station.server
    if "{uci}" in route:
        issued = await station.journal.issue(IssueRequest(product=PRODUCT, actor="fuzz"))
        route = route.format(uci=issued.ucis[0])
    bearer = b"fst_" + token if token is not None else station.tokens["operator"].encode()
    head = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\n" % (route.encode(), bearer))
    status = await _raw(str(server.host), int(server.port or 0), head, body)
    code = int(status.split()[1])
    assert 400 <= code < 500 or code in (200, 201), status
