"""The simulated ESP RainMaker claiming service's HTTP edge (seed 001's API): host-driven
claiming (`POST /claim/initiate`, `POST /claim/verify`), plus what the RainMaker CLI asks of
the RainMaker API around a claim (`POST /v1/login2`, `GET /mqtt_host`, `GET /apiversions`),
and a switch for faults (`POST /_sim/faults`). `serve` runs it for `factory sim-cloud
rainmaker`.

Bodies as the real service's: the claiming API's refusals are `{"status": "failure",
"description": …}` with 400; its gateway's are `{"message": …}` (401 for a missing, unknown
or expired access token, sent bare in `Authorization` as the CLI sends it; 429 throttled;
5xx)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from factory import certs
from factory.testbed.clouds.rainmaker.store import QuotaExhausted, Store, User
from factory.testbed.registry.ca import CertificateAuthority
from factory.web.listen import start_site

log = logging.getLogger("factory.sim_cloud.rainmaker")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PLATFORMS = ("esp32", "esp32s2", "esp32c3", "esp32s3", "esp32c2", "esp32c6", "esp32h2")
QUOTA_EXHAUSTED = "User does not have available quota. Please contact Administrator"
_MAC = re.compile(r"^[0-9A-F]{12}\Z")


@dataclass(frozen=True)
class Settings:
    """What `factory sim-cloud rainmaker` is told; building it does no I/O."""

    db: Path
    host: str = "127.0.0.1"
    port: int = 8080
    mqtt_host: str = "a1sim2rainmaker3-ats.iot.us-east-1.amazonaws.com"
    mqtt_cred_host: str = "c1sim2rainmaker3.credentials.iot.us-east-1.amazonaws.com"
    token_ttl: float = 3600.0  # an access token's life, as Cognito's

    @property
    def ca_paths(self) -> tuple[Path, Path]:
        """The sim's CA key (0600) and certificate, beside its database."""
        return (self.db.with_name(self.db.name + ".ca-key.pem"),
                self.db.with_name(self.db.name + ".ca.pem"))


@dataclass
class Faults:
    """Misbehaviour for the next requests to the claiming API, set by POST /_sim/faults."""

    unavailable: int = 0  # answer 503 this many times
    throttle: int = 0  # answer 429 this many times
    retry_after: int | None = None  # seconds, sent with a 429


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
CA = web.AppKey("ca", CertificateAuthority)
FAULTS = web.AppKey("faults", Faults)


class Refused(Exception):
    """Answered as `body` with `status`."""

    def __init__(self, status: int, body: dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.status, self.body, self.headers = status, body, headers or {}


def failure(description: str) -> Refused:
    """The claiming API's own refusal."""
    return Refused(400, {"status": "failure", "description": description})


def make_app(settings: Settings) -> web.Application:
    """The simulated service as an aiohttp app; opens its store and CA on start-up."""
    app = web.Application(middlewares=[error_middleware], client_max_size=256 * 1024)
    app[SETTINGS], app[FAULTS] = settings, Faults()
    app.cleanup_ctx.append(_store)
    app.add_routes([
        web.post("/claim/initiate", initiate),
        web.post("/claim/verify", verify),
        web.post("/v1/login2", login),
        web.get("/mqtt_host", mqtt_host),
        web.get("/apiversions", api_versions),
        web.post("/_sim/faults", set_faults),
    ])
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    app[STORE] = await Store.open(app[SETTINGS].db)
    app[CA] = await asyncio.to_thread(CertificateAuthority.open, *app[SETTINGS].ca_paths)
    yield
    await app[STORE].close()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Refused as exc:
        return web.json_response(exc.body, status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"message": exc.reason}, status=exc.status)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return web.json_response({"message": "Internal server error"}, status=500)


def _fault(request: web.Request) -> None:
    faults = request.app[FAULTS]
    if faults.unavailable > 0:
        faults.unavailable -= 1
        raise Refused(503, {"message": "Service Unavailable"})
    if faults.throttle > 0:
        faults.throttle -= 1
        headers = {} if faults.retry_after is None else {"Retry-After": str(faults.retry_after)}
        raise Refused(429, {"message": "Too Many Requests"}, headers)


async def _user(request: web.Request) -> User:
    """The user of the bare access token in `Authorization`, as the API gateway checks it."""
    token = request.headers.get("Authorization", "").strip()
    found = await request.app[STORE].user_of(token) if token else None
    if found is None:
        raise Refused(401, {"message": "Unauthorized"})
    user, valid = found
    if not valid:
        raise Refused(401, {"message": "The incoming token has expired"})
    return user


async def _body(request: web.Request) -> dict[str, Any]:
    # The CLI sends str(dict) with quotes swapped; any content type is read as JSON.
    try:
        body = json.loads(await request.text())
    except ValueError:
        raise failure("Invalid request body: JSON expected") from None
    if not isinstance(body, dict):
        raise failure("Invalid request body: a JSON object expected")
    return body


async def initiate(request: web.Request) -> web.Response:
    """POST /claim/initiate {mac_addr, platform} → {node_id} (authenticated claiming)."""
    _fault(request)
    user = await _user(request)
    body = await _body(request)
    mac, platform = body.get("mac_addr"), body.get("platform")
    if not isinstance(mac, str) or not _MAC.match(mac):
        raise failure("Invalid mac_addr: 12 upper-case hex digits without colons expected, "
                      "e.g. 7CDFA100033B")
    if not isinstance(platform, str) or platform.lower() not in PLATFORMS:
        raise failure(f"Invalid platform. Valid platforms are {', '.join(PLATFORMS)}")
    node_id = await request.app[STORE].node_for(user, mac, platform.lower())
    return web.json_response({"node_id": node_id})


async def verify(request: web.Request) -> web.Response:
    """POST /claim/verify {csr[, send_mqtt_host]} → {certificate[, mqtt_host]}."""
    _fault(request)
    user = await _user(request)
    body = await _body(request)
    csr = body.get("csr")
    if not isinstance(csr, str):
        raise failure("Invalid request: csr is required")
    try:
        names = x509.load_pem_x509_csr(csr.encode()).subject.get_attributes_for_oid(
            NameOID.COMMON_NAME)
        node_id = str(names[0].value) if names else ""
        checked = certs.check_csr(csr, node_id)
    except (ValueError, certs.CertError) as exc:
        raise failure(f"Invalid CSR: {exc}") from None
    try:
        if not await request.app[STORE].certify(user, node_id):
            raise failure("Invalid CSR: its common name is not a node_id this user initiated "
                          "a claim for")
    except QuotaExhausted:
        raise failure(QUOTA_EXHAUSTED) from None
    issued = request.app[CA].sign(checked, dt.datetime.now(dt.UTC))
    answer = {"certificate": issued.pem}
    if body.get("send_mqtt_host") is True:
        answer["mqtt_host"] = request.app[SETTINGS].mqtt_host
    return web.json_response(answer)


async def login(request: web.Request) -> web.Response:
    """POST /v1/login2 {user_name, password} → tokens (what `esp-rainmaker-cli login` asks)."""
    body = await _body(request)
    name, password = body.get("user_name"), body.get("password")
    tokens = None
    if isinstance(name, str) and isinstance(password, str):
        tokens = await request.app[STORE].login(name, password, request.app[SETTINGS].token_ttl)
    if tokens is None:
        raise Refused(401, {"status": "failure", "description": "Incorrect user name or "
                                                               "password"})
    return web.json_response({"status": "success", "description": "Login successful",
                              "idtoken": tokens.idtoken, "accesstoken": tokens.accesstoken,
                              "refreshtoken": tokens.refreshtoken})


async def mqtt_host(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return web.json_response({"status": "success", "mqtt_host": settings.mqtt_host,
                              "mqtt_cred_host": settings.mqtt_cred_host})


async def api_versions(request: web.Request) -> web.Response:
    return web.json_response({"supported_versions": ["v1"]})


async def set_faults(request: web.Request) -> web.Response:
    """The test switch: {"unavailable": n, "throttle": n, "retry_after": s}."""
    body = await _body(request)
    faults = request.app[FAULTS]
    for name in ("unavailable", "throttle", "retry_after"):
        value = body.get(name, getattr(faults, name))
        if value is not None and (not isinstance(value, int) or value < 0):
            raise failure(f"{name} must be a whole number of at least 0")
        setattr(faults, name, value)
    return web.json_response({"unavailable": faults.unavailable, "throttle": faults.throttle,
                              "retry_after": faults.retry_after})


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, logging where."""
    runner = web.AppRunner(make_app(settings), handle_signals=False)
    await runner.setup()
    try:
        await start_site(runner, settings.host, settings.port)
        for host, port in (a[:2] for a in runner.addresses):
            log.info("simulated RainMaker claiming service listening on http://%s:%d/ "
                     "(db %s)", host, port, settings.db)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
