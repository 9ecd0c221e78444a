"""The `http` upstream adapter.

End to end against the real reference registry (factory/testbed/registry) on 127.0.0.1; the error
classification against a small aiohttp server that answers with the contract's wire format
(statuses, problem bodies, Retry-After), because the registry cannot be made to fail on cue;
TLS against a real TLS server with a private CA and client certificates.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from factory.secret_hash import hash_secret
from factory.testbed.registry.app import make_app
from factory.testbed.registry.keys import STORE, Settings
from factory.uci import new_uci
from factory.upstream import (
    ConflictError,
    PermanentError,
    Registration,
    RetryableError,
    UpstreamError,
)
from factory.upstream.http import HttpUpstream

TOKEN = "fst_test-token"
PROBLEM = "application/problem+json"
CREATED = dt.datetime(2026, 11, 20, 9, 14, 3, tzinfo=dt.UTC)


def registration(uci: str, **changes: Any) -> Registration:
    fields: dict[str, Any] = {"uci": uci, "product": "sensor-v2", "hardware_id": "7CDFA100033B",
                              "model": "SV2-EU", "name": "Sensor v2", "created": CREATED}
    return Registration(**(fields | changes))


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": f"urn:factory-station:problem:{slug}", "title": title, "status": status,
            "detail": detail, "instance": "/v1/devices", **extra}


# --- the real reference registry -------------------------------------------------------


@dataclass
class Registry:
    url: str
    product_token: str
    account_token: str
    ca_pem: str


ENDPOINT = "mqtts://registry.test:8883"


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    settings = Settings(db=tmp_path / "registry.db", endpoint=ENDPOINT)
    server = TestServer(make_app(settings), host="127.0.0.1")
    await server.start_server()
    store, now = server.app[STORE], "2026-11-20T09:00:00Z"
    product = await store.add_token("product", "line-1", now)
    account = await store.add_token("account", "acme-fleet", now)
    await store.add_token("account", "other-fleet", now)
    yield Registry(str(server.make_url("/")), product, account, settings.ca_cert.read_text())
    await server.close()


def csr_for(uci: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key and its PKCS#10 request with CN = the UCI, as a unit would make them."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(uci)).sign(
        key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


async def test_register_is_created_then_already_then_a_conflict(registry, session):
    upstream = HttpUpstream(session, registry.url, registry.product_token)
    uci = new_uci()
    first = await upstream.register(registration(uci))
    assert first.created
    device = first.device
    assert (device.uci, device.product, device.hardware_id, device.model, device.name) == (
        uci, "sensor-v2", "7CDFA100033B", "SV2-EU", "Sensor v2")
    assert device.created == CREATED
    assert device.claim.status == "unclaimed" and device.claim.account is None
    assert device.certificate is None and not device.has_claim_secret
    again = await upstream.register(registration(uci))
    assert not again.created
    assert again.device == device
    with pytest.raises(ConflictError) as caught:
        await upstream.register(registration(uci, model="SV2-US"))
    assert caught.value.conflicting == ("model",)
    assert caught.value.problem_type == "urn:factory-station:problem:conflict"
    assert await upstream.lookup(uci) == device


async def test_concurrent_retries_register_a_unit_once(registry, session):
    upstream = HttpUpstream(session, registry.url, registry.product_token)
    uci = new_uci()
    results = await asyncio.gather(*(upstream.register(registration(uci)) for _ in range(12)))
    assert [r.created for r in results].count(True) == 1


async def test_a_claim_secret_goes_up_only_as_its_hash(registry, session):
    upstream = HttpUpstream(session, registry.url, registry.product_token)
    uci, expires = new_uci(), CREATED + dt.timedelta(days=365)
    hashed = hash_secret("H7K2-9QPM", iterations=10_000)
    result = await upstream.register(registration(uci, claim_secret_hash=hashed,
                                                  claim_expires=expires))
    assert result.device.has_claim_secret
    assert result.device.claim_expires == expires


async def test_preclaim_certifies_the_units_key_once(registry, session):
    upstream = HttpUpstream(session, registry.url, registry.product_token)
    uci = new_uci()
    await upstream.register(registration(uci))
    key, csr = csr_for(uci)
    issued = await upstream.preclaim(uci, "acme-fleet", csr)
    assert issued.created
    assert (issued.uci, issued.account, issued.endpoint) == (uci, "acme-fleet", ENDPOINT)
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == uci
    assert cert.public_key() == key.public_key()
    assert issued.ca_chain == (registry.ca_pem,)
    ca = x509.load_pem_x509_certificate(issued.ca_chain[0].encode())
    cert.verify_directly_issued_by(ca)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert issued.fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()
    assert issued.not_after == cert.not_valid_after_utc

    retry = await upstream.preclaim(uci, "acme-fleet", csr)  # the outbox's retry
    assert not retry.created
    assert retry.certificate_pem == issued.certificate_pem

    device = await upstream.lookup(uci)
    assert (device.claim.status, device.claim.account, device.claim.how) == (
        "claimed", "acme-fleet", "pre")
    assert device.claim.claimed_at is not None
    assert device.certificate is not None
    assert device.certificate.fingerprint == issued.fingerprint


async def test_preclaim_refusals_are_permanent(registry, session):
    upstream = HttpUpstream(session, registry.url, registry.product_token)
    registered, unregistered = new_uci(), new_uci()
    await upstream.register(registration(registered))

    with pytest.raises(PermanentError) as caught:
        await upstream.preclaim(unregistered, "acme-fleet", csr_for(unregistered)[1])
    assert (caught.value.status, caught.value.problem_type) == (
        404, "urn:factory-station:problem:not-found")

    with pytest.raises(PermanentError) as caught:  # a CSR made for another unit
        await upstream.preclaim(registered, "acme-fleet", csr_for(unregistered)[1])
    assert (caught.value.status, caught.value.problem_type) == (
        422, "urn:factory-station:problem:invalid-csr")
    assert caught.value.problem["field"] == "csr"

    with pytest.raises(PermanentError) as caught:
        await upstream.preclaim(registered, "nobody", csr_for(registered)[1])
    assert (caught.value.status, caught.value.problem["field"]) == (422, "account")

    await upstream.preclaim(registered, "acme-fleet", csr_for(registered)[1])
    with pytest.raises(ConflictError) as conflict:
        await upstream.preclaim(registered, "other-fleet", csr_for(registered)[1])
    assert conflict.value.problem_type == "urn:factory-station:problem:claimed"


async def test_lookup_of_an_unknown_unit_is_permanent(registry, session):
    with pytest.raises(PermanentError) as caught:
        await HttpUpstream(session, registry.url, registry.product_token).lookup(new_uci())
    assert caught.value.status == 404


async def test_the_wrong_token_is_permanent(registry, session):
    uci = new_uci()
    with pytest.raises(PermanentError) as unknown:
        await HttpUpstream(session, registry.url, "fst_unknown").register(registration(uci))
    assert unknown.value.status == 401
    with pytest.raises(PermanentError) as wrong_kind:
        await HttpUpstream(session, registry.url, registry.account_token).lookup(uci)
    assert wrong_kind.value.status == 403


async def test_a_stopped_registry_is_retryable(tmp_path, session):
    server = TestServer(make_app(Settings(db=tmp_path / "registry.db")), host="127.0.0.1")
    await server.start_server()
    token = await server.app[STORE].add_token("product", "line-1", "2026-11-20T09:00:00Z")
    url = str(server.make_url("/"))
    upstream = HttpUpstream(session, url, token)
    uci = new_uci()
    assert (await upstream.register(registration(uci))).created
    await server.close()
    with pytest.raises(RetryableError) as caught:
        await upstream.lookup(uci)
    assert caught.value.status is None and caught.value.retry_after is None


# --- a server that answers what each test tells it to ------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Scripted:
    """One route for everything; `reply` decides the answer, `seen` keeps what came in."""

    url: str
    reply: Handler
    seen: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        state.seen.append((request.method, request.path, dict(request.headers), body))
        return await state.reply(request)

    async def unscripted(request: web.Request) -> web.StreamResponse:
        raise AssertionError("the test did not say how to answer")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state = Scripted(f"http://127.0.0.1:{port}", unscripted)
    yield state
    state.release.set()  # lets a deliberately slow handler finish so cleanup is quick
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def replying(status: int, body: Any = None, *, content_type: str = PROBLEM,
             headers: dict[str, str] | None = None, text: str | None = None) -> Handler:
    async def reply(request: web.Request) -> web.StreamResponse:
        payload = text if text is not None else json.dumps(body)
        return web.Response(status=status, text=payload, headers=headers,
                            content_type=content_type)
    return reply


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (500, {}, None),
        (502, {}, None),
        (503, {"Retry-After": "7"}, 7.0),
        (429, {"Retry-After": "2"}, 2.0),
        (408, {}, None),
        (503, {"Retry-After": "not a number"}, None),
    ],
)
async def test_transient_answers_are_retryable(scripted, session, status, headers, retry_after):
    scripted.reply = replying(status, problem(status, "unavailable", "Unavailable",
                                              "the registry is busy"), headers=headers)
    upstream = HttpUpstream(session, scripted.url, TOKEN)
    with pytest.raises(RetryableError) as caught:
        await upstream.register(registration(new_uci()))
    assert caught.value.status == status
    assert caught.value.retry_after == retry_after
    assert f"{status} Unavailable: the registry is busy" in caught.value.reason


async def test_retry_after_as_an_http_date(scripted, session):
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=90)
    header = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    scripted.reply = replying(503, problem(503, "unavailable", "Unavailable", "maintenance"),
                              headers={"Retry-After": header})
    with pytest.raises(RetryableError) as caught:
        await HttpUpstream(session, scripted.url, TOKEN).lookup(new_uci())
    assert caught.value.retry_after is not None
    assert 85 <= caught.value.retry_after <= 90


@pytest.mark.parametrize(
    ("status", "slug", "extra"),
    [
        (400, "bad-request", {}),
        (401, "unauthorized", {}),
        (403, "forbidden", {}),
        (404, "not-found", {}),
        (413, "too-large", {}),
        (422, "invalid-field", {"field": "hardware_id"}),
    ],
)
async def test_other_client_errors_are_permanent(scripted, session, status, slug, extra):
    body = problem(status, slug, "Refused", "fix the request", **extra)
    scripted.reply = replying(status, body)
    with pytest.raises(PermanentError) as caught:
        await HttpUpstream(session, scripted.url, TOKEN).register(registration(new_uci()))
    error = caught.value
    assert not isinstance(error, ConflictError)
    assert error.status == status
    assert error.problem == body
    assert error.problem_type == f"urn:factory-station:problem:{slug}"
    assert "Refused: fix the request" in error.reason


async def test_a_conflict_says_which_fields_differ(scripted, session):
    scripted.reply = replying(409, problem(409, "conflict", "Conflict", "different body",
                                           conflicting=["model", "name"]))
    with pytest.raises(ConflictError) as caught:
        await HttpUpstream(session, scripted.url, TOKEN).register(registration(new_uci()))
    assert caught.value.status == 409
    assert caught.value.conflicting == ("model", "name")
    assert isinstance(caught.value, PermanentError)


async def test_a_proxy_page_is_still_classified_and_shown(scripted, session):
    page = "<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"
    scripted.reply = replying(502, text=page, content_type="text/html")
    with pytest.raises(RetryableError, match=r"502 <html><body><h1>502 Bad Gateway</h1> <p>nginx"):
        await HttpUpstream(session, scripted.url, TOKEN).lookup(new_uci())


async def test_a_redirect_is_not_followed(scripted, session):
    scripted.reply = replying(308, text="", content_type="text/plain",
                              headers={"Location": "https://registry.example/v1/devices"})
    with pytest.raises(PermanentError, match=r"redirected to https://registry\.example") as caught:
        await HttpUpstream(session, scripted.url, TOKEN).register(registration(new_uci()))
    assert caught.value.status == 308
    assert len(scripted.seen) == 1


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"id": "only this"}'])
async def test_a_success_without_the_contracts_body_is_retryable(scripted, session, body):
    scripted.reply = replying(200, text=body, content_type="application/json")
    uci = new_uci()
    with pytest.raises(RetryableError, match=f"GET .*/v1/devices/{uci}: 200 with a body") as caught:
        await HttpUpstream(session, scripted.url, TOKEN).lookup(uci)
    assert caught.value.status == 200


async def test_a_slow_reply_times_out(scripted, session):
    async def slow(request: web.Request) -> web.StreamResponse:
        await scripted.release.wait()
        return web.json_response({})

    scripted.reply = slow
    upstream = HttpUpstream(session, scripted.url, TOKEN, timeout=0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(RetryableError, match=r"no answer within 0.2 s") as caught:
        async with asyncio.timeout(5):  # without the adapter's own timeout: fail, not hang
            await upstream.preclaim(new_uci(), "acme-fleet", "csr")
    assert asyncio.get_running_loop().time() - started < 2
    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, TimeoutError)


async def test_connection_refused_is_retryable(session):
    with socket.socket() as s:  # a port nobody listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryableError, match="Connect") as caught:
        await HttpUpstream(session, f"http://127.0.0.1:{port}", TOKEN).lookup(new_uci())
    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)


async def test_a_dropped_connection_is_retryable(scripted, session):
    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    scripted.reply = hang_up
    with pytest.raises(RetryableError):
        await HttpUpstream(session, scripted.url, TOKEN).register(registration(new_uci()))


async def test_what_goes_on_the_wire(scripted, session):
    """Bearer token, JSON body, one Idempotency-Key per unit and action, canonical ids."""
    scripted.reply = replying(503, problem(503, "unavailable", "Unavailable", "later"))
    upstream = HttpUpstream(session, scripted.url + "/registry/", TOKEN)
    uci = new_uci()
    expires = CREATED + dt.timedelta(days=365)
    for call in (
        upstream.register(registration(uci, claim_secret_hash="pbkdf2-sha256$100000$c2FsdA$aA",
                                       claim_expires=expires.astimezone(dt.timezone(
                                           dt.timedelta(hours=2))))),
        upstream.preclaim(uci, "acme-fleet", "-----BEGIN CERTIFICATE REQUEST-----\n"),
        upstream.lookup(uci),
    ):
        with pytest.raises(RetryableError):
            await call
    (m1, p1, h1, b1), (m2, p2, h2, b2), (m3, p3, h3, b3) = scripted.seen
    assert (m1, p1) == ("POST", "/registry/v1/devices")
    assert b1 == {"id": uci, "product": "sensor-v2", "hardware_id": "7CDFA100033B",
                  "model": "SV2-EU", "name": "Sensor v2", "created": "2026-11-20T09:14:03Z",
                  "claim_secret_hash": "pbkdf2-sha256$100000$c2FsdA$aA",
                  "claim_expires": "2027-11-20T09:14:03Z"}
    assert h1["Idempotency-Key"] == f"{uci}:register"
    assert h1["Content-Type"] == "application/json"
    assert (m2, p2) == ("POST", f"/registry/v1/devices/{uci}/preclaim")
    assert b2 == {"account": "acme-fleet", "csr": "-----BEGIN CERTIFICATE REQUEST-----\n"}
    assert h2["Idempotency-Key"] == f"{uci}:preclaim"
    assert (m3, p3, b3) == ("GET", f"/registry/v1/devices/{uci}", None)
    assert "Idempotency-Key" not in h3
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h in (h1, h2, h3))


async def test_a_registration_without_a_secret_sends_no_claim_fields(scripted, session):
    scripted.reply = replying(503, problem(503, "unavailable", "Unavailable", "later"))
    with pytest.raises(RetryableError):
        await HttpUpstream(session, scripted.url, TOKEN).register(registration(new_uci()))
    body = scripted.seen[0][3]
    assert "claim_secret_hash" not in body and "claim_expires" not in body


async def test_bad_arguments_fail_before_any_request(scripted, session):
    with pytest.raises(ValueError, match="base URL"):
        HttpUpstream(session, "ftp://registry.example", TOKEN)
    with pytest.raises(ValueError, match="token"):
        HttpUpstream(session, scripted.url, " ")
    upstream = HttpUpstream(session, scripted.url, TOKEN)
    uci = new_uci()
    for bad in (uci.lower(), f"{uci[:4]}-{uci[4:]}", "../../v1/claims", ""):
        with pytest.raises(ValueError, match="canonical UCI"):
            await upstream.lookup(bad)
    with pytest.raises(ValueError, match="together"):
        registration(uci, claim_secret_hash="pbkdf2-sha256$1$a$b")
    with pytest.raises(ValueError, match="time zone"):
        registration(uci, created=dt.datetime(2026, 1, 1))
    assert scripted.seen == []


# --- TLS: verified by default; a private CA and a client certificate via the session ------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
                 usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(folder: Path, stem: str, cert: x509.Certificate,
                key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class TlsRegistry:
    url: str
    ca: Path
    client: tuple[Path, Path]
    peers: list[str]


@pytest.fixture
async def tls_registry(tmp_path: Path) -> AsyncIterator[TlsRegistry]:
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "abc")
    ca = _certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    ca_path, _ = _write_pair(tmp_path, "ca", ca, ca_key)
    server = _write_pair(tmp_path, "server", _certificate(
        "127.0.0.1", server_key, "Test CA", ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH),
        server_key)
    client = _write_pair(tmp_path, "station", _certificate(
        "line-1", client_key, "Test CA", ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH),
        client_key)
    peers: list[str] = []

    async def who(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peercert")
        peers.append(dict(x[0] for x in peer["subject"])["commonName"])
        return web.json_response(problem(404, "not-found", "Not found", "no such device"),
                                 status=404, content_type=PROBLEM)

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_path))
    server_ctx.load_cert_chain(*server)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()
    app.router.add_get("/v1/devices/{id}", who)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    yield TlsRegistry(f"https://127.0.0.1:{runner.addresses[0][1]}", ca_path, client, peers)
    await runner.cleanup()


async def test_tls_is_verified_by_default(tls_registry, session):
    with pytest.raises(RetryableError, match="TLS certificate did not verify"):
        await HttpUpstream(session, tls_registry.url, TOKEN).lookup(new_uci())
    assert tls_registry.peers == []


async def test_a_private_ca_and_a_client_certificate_come_with_the_session(tls_registry):
    # Exactly what HttpUpstream's docstring tells whoever builds the session to do.
    ctx = ssl.create_default_context(cafile=str(tls_registry.ca))
    ctx.load_cert_chain(*tls_registry.client)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        with pytest.raises(PermanentError) as caught:
            await HttpUpstream(session, tls_registry.url, TOKEN).lookup(new_uci())
    assert caught.value.status == 404
    assert tls_registry.peers == ["line-1"]


async def test_without_the_client_certificate_the_handshake_is_refused(tls_registry):
    ctx = ssl.create_default_context(cafile=str(tls_registry.ca))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        with pytest.raises(UpstreamError) as caught:
            await HttpUpstream(session, tls_registry.url, TOKEN, timeout=5).lookup(new_uci())
    assert isinstance(caught.value, RetryableError)
    assert tls_registry.peers == []
