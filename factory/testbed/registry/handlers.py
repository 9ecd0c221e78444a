"""The registry's endpoints (docs/upstream-http.md): thin; decisions live in model, claims
and store."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from aiohttp import web

from factory.testbed.registry import model
from factory.testbed.registry.ca import check_csr
from factory.testbed.registry.claims import proves_knowledge, secret_expired
from factory.testbed.registry.errors import (
    Claimed,
    ClaimRefused,
    Conflict,
    Forbidden,
    NotFound,
    RegistryUnauthorized,
    Unprocessable,
)
from factory.testbed.registry.keys import CA, SETTINGS, STORE
from factory.testbed.registry.store import Certified, TokenKind
from factory.web.body import json_body


async def caller(request: web.Request, kind: TokenKind) -> str:
    """The name behind the request's bearer token, if it is of `kind`; else 401/403."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RegistryUnauthorized("send Authorization: Bearer <token> (make one with "
                                   "`factory registry token`)")
    found = await request.app[STORE].token(token.strip())
    if found is None:
        raise RegistryUnauthorized("this bearer token is not known to the registry")
    if found[0] != kind:
        raise Forbidden(f"this endpoint needs a {kind} token; a {found[0]} token was sent")
    return found[1]


def json_response(body: object, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def register(request: web.Request) -> web.Response:
    await caller(request, "product")
    reg = model.registration(await json_body(request))
    store = request.app[STORE]
    created, row = await store.register(reg, model.iso(_now()))
    if not created:
        conflicting = row.registration.differences(reg)
        if conflicting:
            raise Conflict(f"device {reg.id} is registered with a different body: "
                           f"{', '.join(conflicting)}; a UCI names one unit, issue a new UCI "
                           "for a different one", conflicting=conflicting)
    cert = None if created else await store.newest_certificate(reg.id)
    headers = {"Location": f"/v1/devices/{reg.id}"} if created else None
    return json_response(model.device_view(row, cert), 201 if created else 200, headers)


async def get_device(request: web.Request) -> web.Response:
    await caller(request, "product")
    uci = model.canonical_uci(request.match_info["id"])
    store = request.app[STORE]
    row = await store.device(uci)
    if row is None:
        raise NotFound(f"no device {uci} is registered")
    return json_response(model.device_view(row, await store.newest_certificate(uci)))


async def preclaim(request: web.Request) -> web.Response:
    await caller(request, "product")
    uci = model.canonical_uci(request.match_info["id"])
    body = model.only(await json_body(request), ("account", "csr"), ("account", "csr"))
    account = model.text(body, "account", 1, 64)
    checked = check_csr(model.text(body, "csr", 1, 16_000), uci)
    store = request.app[STORE]
    if not await store.account_exists(account):
        raise Unprocessable(f"account: no account {account!r}; make it with `factory registry "
                            "token --kind account`", field="account")
    ca, now = request.app[CA], _now()
    # Signed here, not in the store's transaction: the one writer thread then only writes
    # (a pre-claim nearly always issues; a repeat just drops this signature).
    issued = ca.sign(checked, now)
    done = await store.certify(uci, checked.spki_sha256, lambda: issued, model.iso(now),
                               preclaim_for=account)
    if done.outcome == "not-registered":
        raise NotFound(f"no device {uci} is registered; register it before pre-claiming")
    if done.outcome == "owned-by-other":
        raise Claimed(f"device {uci} is claimed by another account")
    return json_response(_certificate(request, uci, done), 201 if done.outcome == "issued"
                         else 200)


async def provision(request: web.Request) -> web.Response:
    await caller(request, "product")
    uci = model.canonical_uci(request.match_info["id"])
    body = model.only(await json_body(request), ("csr",), ("csr",))
    checked = check_csr(model.text(body, "csr", 1, 16_000), uci)
    ca, now = request.app[CA], _now()
    done = await request.app[STORE].certify(uci, checked.spki_sha256,
                                            lambda: ca.sign(checked, now), model.iso(now))
    if done.outcome in ("not-registered", "not-claimed"):
        delay = request.app[SETTINGS].poll_delay
        return json_response(model.not_yet(done.outcome, delay),
                             headers={"Retry-After": str(delay)})
    return json_response(_certificate(request, uci, done))


async def claim(request: web.Request) -> web.Response:
    account = await caller(request, "account")
    body = model.only(await json_body(request), ("id", "secret"), ("id",))
    uci = model.any_uci(body["id"])
    secret = None if body.get("secret") is None else model.text(body, "secret", 1, 128)
    store = request.app[STORE]
    device = await store.device(uci)
    if not await asyncio.to_thread(proves_knowledge, device, secret) or device is None:
        raise ClaimRefused()
    if device.owner is None and secret_expired(device, _now()):
        raise ClaimRefused()
    owner, claimed_at = await store.claim(uci, account, model.iso(_now()))
    if owner != account:
        raise Claimed(f"device {uci} is already claimed by another account; its owner must "
                      "release it first")
    return json_response({"id": uci, "account": account, "claimed_at": claimed_at})


async def release(request: web.Request) -> web.Response:
    account = await caller(request, "account")
    uci = model.any_uci(request.match_info["id"])
    if not await request.app[STORE].release(uci, account, model.iso(_now())):
        raise NotFound(f"no device {uci} is claimed by account {account!r}")
    return web.Response(status=204)


def _certificate(request: web.Request, uci: str, done: Certified) -> dict[str, Any]:
    assert done.cert is not None and done.owner is not None  # set for issued and existing
    return model.certificate_answer(uci, done.owner, done.cert.pem, request.app[CA].cert_pem,
                                    request.app[SETTINGS].endpoint, done.cert.fingerprint,
                                    done.cert.not_after)
