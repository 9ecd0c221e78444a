"""The reference registry over real HTTP on 127.0.0.1 with a real SQLite file and CA."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from factory.secret_hash import hash_secret
from factory.testbed.registry.app import make_app
from factory.testbed.registry.keys import STORE, Settings
from factory.uci import human, new_uci

SECRET = "H7K2-9QPM"
ITER = 10_000  # the minimum: keeps hashing cheap in tests


@dataclass
class Registry:
    url: str
    http: aiohttp.ClientSession
    settings: Settings
    product: str
    alice: str
    bob: str

    async def call(self, method: str, path: str, token: str | None = None,
                   body: Any = None, **headers: str) -> tuple[int, Any, Any]:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.url + path, json=body,
                                     headers=headers) as r:
            data = await r.json(content_type=None) if r.status != 204 else None
            return r.status, data, r.headers


@pytest.fixture
async def reg(tmp_path: Path) -> AsyncIterator[Registry]:
    settings = Settings(db=tmp_path / "registry.sqlite", poll_delay=7,
                        endpoint="mqtts://broker.test:8883")
    server = TestServer(make_app(settings), host="127.0.0.1")
    await server.start_server()
    store = server.app[STORE]
    now = "2026-11-20T00:00:00Z"
    tokens = [await store.add_token("product", "line-1", now),
              await store.add_token("account", "alice", now),
              await store.add_token("account", "bob", now)]
    async with aiohttp.ClientSession() as http:
        yield Registry(str(server.make_url("")), http, settings, *tokens)
    await server.close()


def device(uci: str, **changes: Any) -> dict[str, Any]:
    body = {"id": uci, "product": "sensor-v2", "hardware_id": "7CDFA100033B",
            "model": "SV2-EU", "name": "Sensor v2", "created": "2026-11-20T09:14:03Z"}
    return {**body, **changes}


def with_secret(uci: str, expires: dt.timedelta = dt.timedelta(days=30)) -> dict[str, Any]:
    when = (dt.datetime.now(dt.UTC) + expires).isoformat()
    return device(uci, claim_secret_hash=hash_secret(SECRET, ITER), claim_expires=when)


def csr(cn: str, key: Any = None) -> tuple[str, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    req = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return req.public_bytes(serialization.Encoding.PEM).decode(), key


def spki(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def assert_problem(status: int, body: Any, headers: Any, want: int, slug: str) -> None:
    assert status == want, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["type"] == f"urn:factory-station:problem:{slug}"
    assert body["status"] == want and body["detail"]


async def test_registration_is_idempotent_by_content(reg: Registry) -> None:
    uci = new_uci()
    status, body, headers = await reg.call("POST", "/v1/devices", reg.product, device(uci),
                                           **{"Idempotency-Key": f"{uci}:register"})
    assert status == 201 and headers["Location"] == f"/v1/devices/{uci}"
    assert headers["Idempotency-Key"] == f"{uci}:register"
    assert body["id"] == uci and body["claim"] == {"status": "unclaimed"}
    assert body["has_claim_secret"] is False and body["certificate"] is None
    # The same instant written with another offset is the same body.
    same = device(uci, created="2026-11-20T10:14:03+01:00")
    status, again, _ = await reg.call("POST", "/v1/devices", reg.product, same)
    assert status == 200 and again == body
    status, problem, headers = await reg.call("POST", "/v1/devices", reg.product,
                                              device(uci, model="SV2-US", name="other"))
    assert_problem(status, problem, headers, 409, "conflict")
    assert problem["conflicting"] == ["model", "name"]
    status, got, _ = await reg.call("GET", f"/v1/devices/{uci}", reg.product)
    assert status == 200 and got["model"] == "SV2-EU"


async def test_racing_identical_registrations_make_one_device(reg: Registry) -> None:
    uci = new_uci()
    answers = await asyncio.gather(*(reg.call("POST", "/v1/devices", reg.product, device(uci))
                                     for _ in range(20)))
    assert sorted(a[0] for a in answers) == [200] * 19 + [201]
    assert len({a[1]["registered"] for a in answers}) == 1


@pytest.mark.parametrize(("field", "value"), [
    ("id", "7kq2-m9xd-3fht-0w5r"), ("created", "2026-11-20T09:14:03"),
    ("product", ""), ("claim_secret_hash", "plain-secret"), ("colour", "red")])
async def test_bad_registration_fields_are_named(reg: Registry, field: str, value: str) -> None:
    body = device(new_uci(), **{field: value})
    if field == "claim_secret_hash":
        body["claim_expires"] = "2030-01-01T00:00:00Z"
    status, problem, headers = await reg.call("POST", "/v1/devices", reg.product, body)
    assert_problem(status, problem, headers, 422, "invalid-field")
    assert problem["field"] == field


async def test_secret_hash_needs_an_expiry(reg: Registry) -> None:
    body = device(new_uci(), claim_secret_hash=hash_secret(SECRET, ITER))
    status, problem, headers = await reg.call("POST", "/v1/devices", reg.product, body)
    assert_problem(status, problem, headers, 422, "invalid-field")
    assert problem["field"] == "claim_expires"


async def test_tokens_are_checked(reg: Registry) -> None:
    body = device(new_uci())
    status, problem, headers = await reg.call("POST", "/v1/devices", "fst_wrong", body)
    assert_problem(status, problem, headers, 401, "unauthorized")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, problem, headers = await reg.call("POST", "/v1/devices", None, body)
    assert_problem(status, problem, headers, 401, "unauthorized")
    status, problem, headers = await reg.call("POST", "/v1/devices", reg.alice, body)
    assert_problem(status, problem, headers, 403, "forbidden")
    status, problem, headers = await reg.call("POST", "/v1/claims", reg.product,
                                              {"id": body["id"]})
    assert_problem(status, problem, headers, 403, "forbidden")


async def test_preclaim_certifies_the_csr_key(reg: Registry) -> None:
    uci = new_uci()
    await reg.call("POST", "/v1/devices", reg.product, device(uci))
    pem, key = csr(uci)
    status, body, _ = await reg.call("POST", f"/v1/devices/{uci}/preclaim", reg.product,
                                     {"account": "alice", "csr": pem})
    assert status == 201, body
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    ca = x509.load_pem_x509_certificate(body["ca_chain"][0].encode())
    cert.verify_directly_issued_by(ca)
    assert ca == x509.load_pem_x509_certificate(reg.settings.ca_cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == uci
    assert cert.public_key().public_bytes(serialization.Encoding.DER, serialization.
                                          PublicFormat.SubjectPublicKeyInfo) == spki(key)
    assert body["fingerprint"] == "sha256:" + cert.fingerprint(hashes.SHA256()).hex()
    assert body["endpoint"] == "mqtts://broker.test:8883" and body["account"] == "alice"
    # A retry with the same key gets the same certificate, not a second one.
    status, again, _ = await reg.call("POST", f"/v1/devices/{uci}/preclaim", reg.product,
                                      {"account": "alice", "csr": csr(uci, key)[0]})
    assert status == 200 and again["fingerprint"] == body["fingerprint"]
    status, got, _ = await reg.call("GET", f"/v1/devices/{uci}", reg.product)
    assert got["claim"]["status"] == "claimed" and got["claim"]["how"] == "pre"
    assert got["certificate"]["fingerprint"] == body["fingerprint"]
    status, problem, headers = await reg.call("POST", f"/v1/devices/{uci}/preclaim",
                                              reg.product, {"account": "bob", "csr": pem})
    assert_problem(status, problem, headers, 409, "claimed")


async def test_preclaim_accepts_rsa_2048(reg: Registry) -> None:
    uci = new_uci()
    await reg.call("POST", "/v1/devices", reg.product, device(uci))
    pem, key = csr(uci, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    status, body, _ = await reg.call("POST", f"/v1/devices/{uci}/preclaim", reg.product,
                                     {"account": "bob", "csr": pem})
    assert status == 201, body
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().public_bytes(serialization.Encoding.DER, serialization.
                                          PublicFormat.SubjectPublicKeyInfo) == spki(key)


def tampered(uci: str) -> str:
    """A CSR whose subject was changed after signing: parses, but the signature fails."""
    pem, _ = csr(uci)
    der = x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
    other = ("0" if uci[0] != "0" else "1") + uci[1:]
    changed = der.replace(uci.encode(), other.encode())
    assert changed != der
    return x509.load_der_x509_csr(changed).public_bytes(serialization.Encoding.PEM).decode()


async def test_bad_csrs_are_refused(reg: Registry) -> None:
    uci = new_uci()
    await reg.call("POST", "/v1/devices", reg.product, device(uci))
    cases = {
        "CN must be the unit's UCI": csr(new_uci())[0],
        "signature does not verify": tampered(uci),
        "not a PEM": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n",
        "must be P-256": csr(uci, ec.generate_private_key(ec.SECP384R1()))[0],
        "must be 2048 bits": csr(uci, rsa.generate_private_key(65537, 1024))[0],
    }
    for expected, pem in cases.items():
        status, problem, headers = await reg.call("POST", f"/v1/devices/{uci}/preclaim",
                                                  reg.product, {"account": "alice", "csr": pem})
        assert_problem(status, problem, headers, 422, "invalid-csr")
        assert expected in problem["detail"] and problem["field"] == "csr"
    status, got, _ = await reg.call("GET", f"/v1/devices/{uci}", reg.product)
    assert got["claim"] == {"status": "unclaimed"}, "a refused pre-claim must not claim"


async def test_preclaim_needs_a_registered_device_and_a_known_account(reg: Registry) -> None:
    uci = new_uci()
    status, problem, headers = await reg.call("POST", f"/v1/devices/{uci}/preclaim",
                                              reg.product, {"account": "alice",
                                                            "csr": csr(uci)[0]})
    assert_problem(status, problem, headers, 404, "not-found")
    await reg.call("POST", "/v1/devices", reg.product, device(uci))
    status, problem, headers = await reg.call("POST", f"/v1/devices/{uci}/preclaim",
                                              reg.product, {"account": "mallory",
                                                            "csr": csr(uci)[0]})
    assert_problem(status, problem, headers, 422, "invalid-field")
    assert problem["field"] == "account"


async def test_claim_with_the_right_secret(reg: Registry) -> None:
    uci = new_uci()
    await reg.call("POST", "/v1/devices", reg.product, with_secret(uci))
    status, body, _ = await reg.call("POST", "/v1/claims", reg.alice,
                                     {"id": human(uci).lower(), "secret": "h7k29qpm"})
    assert status == 200, body
    assert body["id"] == uci and body["account"] == "alice"
    status, got, _ = await reg.call("GET", f"/v1/devices/{uci}", reg.product)
    assert got["claim"]["account"] == "alice" and got["claim"]["how"] == "user"
    assert got["has_claim_secret"] is True and "claim_secret_hash" not in got


async def test_refusals_do_not_reveal_whether_the_uci_exists(reg: Registry) -> None:
    known, expired = new_uci(), new_uci()
    await reg.call("POST", "/v1/devices", reg.product, with_secret(known))
    await reg.call("POST", "/v1/devices", reg.product,
                   with_secret(expired, dt.timedelta(seconds=-1)))
    attempts = [{"id": known, "secret": "WRONG-123"}, {"id": known},
                {"id": expired, "secret": SECRET}, {"id": new_uci(), "secret": SECRET}]
    answers = [await reg.call("POST", "/v1/claims", reg.alice, a) for a in attempts]
    for status, problem, headers in answers:
        assert_problem(status, problem, headers, 403, "claim-refused")
    assert all(a[1] == answers[0][1] for a in answers), answers
    status, got, _ = await reg.call("GET", f"/v1/devices/{known}", reg.product)
    assert got["claim"] == {"status": "unclaimed"}


async def test_double_claim_says_claimed(reg: Registry) -> None:
    uci = new_uci()
    await reg.call("POST", "/v1/devices", reg.product, with_secret(uci))
    assert (await reg.call("POST", "/v1/claims", reg.alice, {"id": uci, "secret": SECRET}))[0] \
        == 200
    status, problem, headers = await reg.call("POST", "/v1/claims", reg.bob,
                                              {"id": uci, "secret": SECRET})
    assert_problem(status, problem, headers, 409, "claimed")
    # Without the secret, even a claimed unit only gets the vague refusal.
    status, problem, headers = await reg.call("POST", "/v1/claims", reg.bob,
                                              {"id": uci, "secret": "nope"})
    assert_problem(status, problem, headers, 403, "claim-refused")
    status, body, _ = await reg.call("POST", "/v1/claims", reg.alice, {"id": uci,
                                                                        "secret": SECRET})
    assert status == 200 and body["account"] == "alice"


async def test_release_by_owner_then_another_account_claims(reg: Registry) -> None:
    uci = new_uci()
    await reg.call("POST", "/v1/devices", reg.product, device(uci))
    assert (await reg.call("POST", "/v1/claims", reg.alice, {"id": uci}))[0] == 200
    status, problem, headers = await reg.call("DELETE", f"/v1/claims/{uci}", reg.bob)
    assert_problem(status, problem, headers, 404, "not-found")
    status, problem, headers = await reg.call("DELETE", f"/v1/claims/{new_uci()}", reg.alice)
    assert_problem(status, problem, headers, 404, "not-found")
    assert (await reg.call("DELETE", f"/v1/claims/{uci}", reg.alice))[0] == 204
    status, body, _ = await reg.call("POST", "/v1/claims", reg.bob, {"id": uci})
    assert status == 200 and body["account"] == "bob"
    assert (await reg.call("DELETE", f"/v1/claims/{uci}", reg.alice))[0] == 404


async def test_unit_polls_until_claimed_then_gets_its_certificate(reg: Registry) -> None:
    uci = new_uci()
    pem, key = csr(uci)
    status, body, headers = await reg.call("POST", f"/v1/devices/{uci}/provision",
                                           reg.product, {"csr": pem})
    assert status == 200 and body["error"] == "not-registered" and body["delay"] == 7
    await reg.call("POST", "/v1/devices", reg.product, device(uci))
    status, body, headers = await reg.call("POST", f"/v1/devices/{uci}/provision",
                                           reg.product, {"csr": pem})
    assert status == 200 and body["error"] == "not-claimed" and body["delay"] == 7
    assert headers["Retry-After"] == "7" and "certificate" not in body
    status, problem, headers = await reg.call("POST", f"/v1/devices/{uci}/provision",
                                              reg.product, {"csr": csr(new_uci())[0]})
    assert_problem(status, problem, headers, 422, "invalid-csr")
    await reg.call("POST", "/v1/claims", reg.bob, {"id": uci})
    status, body, _ = await reg.call("POST", f"/v1/devices/{uci}/provision", reg.product,
                                     {"csr": pem})
    assert status == 200 and "error" not in body and body["account"] == "bob"
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(body["ca_chain"][0].encode()))
    assert cert.public_key().public_bytes(serialization.Encoding.DER, serialization.
                                          PublicFormat.SubjectPublicKeyInfo) == spki(key)
    status, again, _ = await reg.call("POST", f"/v1/devices/{uci}/provision", reg.product,
                                      {"csr": pem})
    assert again["fingerprint"] == body["fingerprint"]
    # Released: the certificate is revoked and the unit is back to waiting.
    await reg.call("DELETE", f"/v1/claims/{uci}", reg.bob)
    status, body, _ = await reg.call("POST", f"/v1/devices/{uci}/provision", reg.product,
                                     {"csr": pem})
    assert body["error"] == "not-claimed"


async def test_ca_key_and_database_are_private(reg: Registry) -> None:
    for path in (reg.settings.ca_key, reg.settings.db):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    key = serialization.load_pem_private_key(reg.settings.ca_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


async def test_errors_are_problems(reg: Registry) -> None:
    status, problem, headers = await reg.call("GET", "/v1/nowhere", reg.product)
    assert_problem(status, problem, headers, 404, "not-found")
    async with reg.http.post(reg.url + "/v1/devices", data=b"{nope",
                             headers={"Authorization": f"Bearer {reg.product}"}) as r:
        assert r.status == 400 and (await r.json(content_type=None))["type"].endswith(
            "bad-request")


def test_cli_makes_tokens_and_serves(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    cli = [sys.executable, "-m", "factory.cli"]
    made = subprocess.run([*cli, "registry", "token", "--db", str(db), "--kind", "product",
                           "--name", "line-1"], capture_output=True, text=True, check=True)
    token = made.stdout.strip()
    assert token.startswith("fst_") and token not in db.read_bytes().decode("latin-1")
    proc = subprocess.Popen([*cli, "registry", "serve", "--db", str(db), "--listen",
                             "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"registry listening on (http://127\.0\.0\.1:\d+)/", line)
        assert match, line

        async def register() -> int:
            async with aiohttp.ClientSession() as http, http.post(
                    match.group(1) + "/v1/devices", json=device(new_uci()),
                    headers={"Authorization": f"Bearer {token}"}) as r:
                return r.status

        assert asyncio.run(register()) == 201
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        if proc.stderr is not None:
            proc.stderr.close()
