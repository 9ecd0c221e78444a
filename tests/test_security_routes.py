"""Every route of the station and of the reference registry, called with every kind of
credential: none, malformed, revoked or unknown, and each role's token. What each route
accepts is read from the OpenAPI documents' `security` lists, so the code is checked against
the documents (and a route the documents leave out fails)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from factory.config import load
from factory.journal import open_journal
from factory.testbed.registry.app import make_app as make_registry
from factory.testbed.registry.keys import STORE, Settings
from factory.tokens import new_token, token_hash
from factory.web.app import make_app
from factory.web.status_routes import COOKIE
from tests.conftest import CONFIG_TEXT, PRODUCT, ROOT, write_config

PROBLEM = "application/problem+json"
REGISTRY_DOC = ROOT / "docs" / "upstream-http.openapi.json"
ROLES = ("device", "operator", "viewer")


@dataclass(frozen=True)
class Credential:
    """One way a caller may present itself. `scheme` is the OpenAPI security scheme the
    credential travels in; `role` is the role (or registry token kind) it really has, None
    when it is not a working token at all."""

    name: str
    scheme: str | None = None
    role: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)


def bearer_forms(good: str, kind: str) -> list[Credential]:
    """No token and the malformed ones, built around a working token of `kind`."""
    def header(name: str, value: str) -> Credential:
        return Credential(name, "bearer", None, {"Authorization": value})
    return [
        Credential("no token"),
        header("empty bearer", "Bearer"),
        header("basic auth", "Basic dXNlcjpwYXNz"),
        header("unknown token", f"Bearer {new_token()}"),
        header(f"{kind} token, wrong scheme", f"Token {good}"),
        header(f"{kind} token, no scheme", good),
        header(f"{kind} token plus a byte", f"Bearer {good}x"),
        header(f"{kind} token's stored hash", f"Bearer {token_hash(good)}"),
    ]


def expected(doc: dict[str, Any], op: dict[str, Any], cred: Credential,
             on_network: bool) -> int | None:
    """401, 403, or None (let through) for `cred` on `op`, from the document alone."""
    security = op.get("security", doc.get("security", []))
    anonymous = security == [] or {} in security
    if anonymous and ("x-open-networks" not in op or on_network):
        return None
    if security == []:
        return 403  # open only to some networks, and this caller is not on one
    accepted = [roles for req in security for scheme, roles in req.items()
                if scheme == cred.scheme]
    if cred.role is None or not accepted:
        return 401
    # An empty list (OpenAPI's default) takes any working token.
    return None if any(not roles or cred.role in roles for roles in accepted) else 403


async def check(resp: aiohttp.ClientResponse, method: str, op: dict[str, Any],
                want: int | None) -> str | None:
    """What is wrong with `resp`, or None."""
    status = resp.status
    if want is None:
        if status in (401, 403) or str(status) not in op["responses"]:
            return f"let through expected, got {status} {await resp.text()}"
        return None
    if status != want:
        return f"{want} expected, got {status} {await resp.text()}"
    if resp.content_type != PROBLEM:
        return f"{status} is {resp.content_type}, not a problem body"
    if method != "HEAD":
        body = await resp.json(content_type=PROBLEM)
        if body.get("status") != want or not body.get("detail") or not body.get("type"):
            return f"bad problem body {body}"
    if want == 401 and not resp.headers.get("WWW-Authenticate", "").startswith("Bearer"):
        return f"401 without WWW-Authenticate: Bearer ({dict(resp.headers)})"
    if want == 403 and "WWW-Authenticate" in resp.headers:
        return "a 403 asks for credentials"
    return None


def served_operations(app: Any, doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, documented operation) for every route the app serves; HEAD is
    documented by its GET."""
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert {(m, p) for m, p in routes if m != "HEAD"} == documented, \
        "served and documented routes differ"
    return [(m, p, doc["paths"][p]["get" if m == "HEAD" else m.lower()])
            for m, p in sorted(routes)]


async def call(session: TestClient[Any, Any] | aiohttp.ClientSession, base: str,
               method: str, path: str, body: Any, cred: Credential, op: dict[str, Any],
               want: int | None) -> str | None:
    headers = dict(cred.headers)
    if cred.cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cred.cookies.items())
    async with session.request(method, base + path, json=body, headers=headers,
                               allow_redirects=False) as resp:
        return await check(resp, method, op, want)


# -- the station ----------------------------------------------------------------------------

NETWORKS = {
    # Nobody may come in without a token: the client (127.0.0.1) is on no listed network.
    "closed": '[ioto]\nnetworks = ["10.0.0.0/8"]\n',
    # The client is on the Ioto network and on the status page's open networks.
    "open": '[ioto]\nnetworks = ["127.0.0.0/8", "::1/128"]\n\n'
            '[status]\nshifts = ["06:00"]\nopen_networks = ["127.0.0.0/8", "::1/128"]\n',
}


@dataclass
class Line:
    client: TestClient[Any, Any]
    tokens: dict[str, str]
    uci: str


@pytest.fixture(params=sorted(NETWORKS))
async def line(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Line]:
    text = CONFIG_TEXT.replace('[ioto]\nnetworks = ["127.0.0.0/8", "::1/128"]\n',
                               NETWORKS[request.param])
    assert text != CONFIG_TEXT
    config = load(write_config(tmp_path, text))
    journal = await open_journal(config.journal, config.station_id)
    tokens: dict[str, str] = {}
    for role in ROLES:
        for state in ("active", "revoked"):
            tokens[f"{state} {role}"] = new_token()
            await journal.add_token(f"{state}-{role}", role,  # type: ignore[arg-type]
                                    token_hash(tokens[f"{state} {role}"]))
        await journal.revoke_token(f"revoked-{role}")
    try:
        async with TestClient(TestServer(make_app(config, journal), host="127.0.0.1")) as c:
            resp = await c.post("/api/v1/ucis", json={"product": PRODUCT},
                                headers={"Authorization": f"Bearer {tokens['active device']}"})
            assert resp.status == 201
            yield Line(c, tokens, (await resp.json())["uci"])
    finally:
        await journal.close()


def station_credentials(tokens: dict[str, str]) -> list[Credential]:
    creds = bearer_forms(tokens["active operator"], "operator")
    for role in ROLES:
        creds.append(Credential(f"revoked {role}", "bearer", None,
                                {"Authorization": f"Bearer {tokens['revoked ' + role]}"}))
        creds.append(Credential(f"{role}", "bearer", role,
                                {"Authorization": f"Bearer {tokens['active ' + role]}"}))
        # The status page's cookie: the same tokens, another way in.
        creds.append(Credential(f"cookie: revoked {role}", "statusCookie", None,
                                cookies={COOKIE: tokens["revoked " + role]}))
        creds.append(Credential(f"cookie: {role}", "statusCookie", role,
                                cookies={COOKIE: tokens["active " + role]}))
    creds.append(Credential("cookie: garbage", "statusCookie", None,
                            cookies={COOKIE: "not-a-token"}))
    return creds


STATION_BODIES = {"/api/v1/ucis": {"product": PRODUCT},
                  "/api/v1/units/{uci}/void": {"reason": "security test"},
                  "/ioto/serialize": {"product": PRODUCT, "mac": "02:00:00:00:07:01"},
                  "/api/v1/fixtures/{name}/scan": {"code": "not a label"}}


async def test_every_station_route_with_every_credential(line: Line,
                                                         request: pytest.FixtureRequest) -> None:
    doc = await (await line.client.get("/api/v1/openapi.json")).json()
    on_network = request.node.callspec.params["line"] == "open"
    creds = station_credentials(line.tokens)
    failures: list[str] = []
    cases = 0
    for method, path, op in served_operations(line.client.app, doc):
        url = path.format(uci=line.uci, name="status.css")
        for cred in creds:
            want = expected(doc, op, cred, on_network)
            wrong = await call(line.client, "", method, url, STATION_BODIES.get(path), cred, op,
                               want)
            cases += 1
            if wrong:
                failures.append(f"{method} {path} with {cred.name}: {wrong}")
    assert not failures, "\n".join(failures)
    print(f"station ({request.node.callspec.params['line']}): {cases} route x credential cases")


async def test_the_open_station_routes_are_exactly_the_documented_ones(line: Line) -> None:
    """Without a credential from a listed network, only the `security: []` (or `{}`)
    operations answer; every other one asks for a token."""
    doc = await (await line.client.get("/api/v1/openapi.json")).json()
    open_ops = {(m.upper(), p) for p, ops in doc["paths"].items() for m, op in ops.items()
                if op.get("security") == [] or {} in op.get("security", [])}
    assert open_ops == {("GET", "/healthz"), ("GET", "/metrics"),
                        ("GET", "/api/v1/openapi.json"), ("POST", "/ioto/serialize"),
                        ("GET", "/"), ("GET", "/api/v1/status"),
                        ("GET", "/api/v1/status/events"), ("GET", "/static/{name}")}
    # Network-gated ones say which config key opens them.
    assert {(m.upper(), p) for p, ops in doc["paths"].items() for m, op in ops.items()
            if "x-open-networks" in op} == open_ops - {
        ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/api/v1/openapi.json"),
        ("GET", "/static/{name}")}


async def test_a_token_in_the_status_address_is_checked_before_it_is_kept(line: Line) -> None:
    for token, status in ((line.tokens["revoked viewer"], 401), ("fst_nothing", 401),
                          (line.tokens["active device"], 403),
                          (line.tokens["active viewer"], 303)):
        resp = await line.client.get(f"/?token={token}", allow_redirects=False)
        assert resp.status == status, await resp.text()
        if status == 303:
            assert resp.headers["Location"] == "/"
            cookie = resp.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        else:
            assert resp.content_type == PROBLEM and "Set-Cookie" not in resp.headers


async def test_a_head_of_the_event_stream_leaves_the_connection_usable(line: Line) -> None:
    """HEAD /api/v1/status/events once streamed the events anyway: the next answer on the
    kept-alive connection was then read from the event bytes (400 bad status line)."""
    viewer = {"Authorization": f"Bearer {line.tokens['active viewer']}"}
    for _ in range(3):
        head = await line.client.head("/api/v1/status/events", headers=viewer)
        assert head.status == 200 and head.content_type == "text/event-stream"
        assert (await line.client.get("/healthz")).status == 200


# -- the reference registry -----------------------------------------------------------------

@dataclass
class RegistryUp:
    http: aiohttp.ClientSession
    url: str
    app: Any
    tokens: dict[str, str]


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryUp]:
    server = TestServer(make_registry(Settings(db=tmp_path / "registry.sqlite")),
                        host="127.0.0.1")
    await server.start_server()
    store = server.app[STORE]
    now = "2026-11-23T00:00:00Z"
    tokens = {"product": await store.add_token("product", "line-1", now),
              "account": await store.add_token("account", "alice", now)}
    try:
        async with aiohttp.ClientSession() as http:
            yield RegistryUp(http, str(server.make_url("")).rstrip("/"), server.app, tokens)
    finally:
        await server.close()


async def test_every_registry_route_with_every_token_kind(registry: RegistryUp) -> None:
    doc = json.loads(REGISTRY_DOC.read_text())
    uci = "7KQ2M9XD3FHT0W5R"
    bodies = {"/v1/devices": {"id": uci, "product": "sensor", "hardware_id": "7CDFA100033B",
                              "model": "S-1", "name": "Sensor",
                              "created": "2026-11-23T09:00:00Z"},
              "/v1/devices/{id}/preclaim": {}, "/v1/devices/{id}/provision": {},
              "/v1/claims": {"id": uci}}
    # Registered first, so an account token's claim (no secret) is not refused for an
    # unknown unit: a 403 claim-refused would look like a wrong-kind 403.
    async with registry.http.post(f"{registry.url}/v1/devices", json=bodies["/v1/devices"],
                                  headers={"Authorization":
                                           f"Bearer {registry.tokens['product']}"}) as r:
        assert r.status == 201, await r.text()
    creds = bearer_forms(registry.tokens["product"], "product")
    # The registry's tokens are never revoked (docs/upstream-http.md); "unknown token" in
    # bearer_forms stands for one it no longer knows.
    creds += [Credential(kind, "bearer", kind, {"Authorization": f"Bearer {token}"})
              for kind, token in registry.tokens.items()]
    failures: list[str] = []
    cases = 0
    for method, path, op in served_operations(registry.app, doc):
        for cred in creds:
            want = expected(doc, op, cred, on_network=False)
            wrong = await call(registry.http, registry.url, method, path.format(id=uci),
                               bodies.get(path), cred, op, want)
            cases += 1
            if wrong:
                failures.append(f"{method} {path} with {cred.name}: {wrong}")
    assert not failures, "\n".join(failures)
    print(f"registry: {cases} route x credential cases")
