"""The simulated Particle cloud's HTTP edge: the Cloud API endpoints a product creator's
factory and a customer's setup use (importing device IDs into a product, reading a product
device, creating claim codes), Particle's error bodies (JSON always: particle-api-js parses
every error body), and `serve` for `factory sim-cloud particle`."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from factory.testbed.clouds.particle.store import Product, Store, User
from factory.web.listen import start_site

log = logging.getLogger("factory.sim_cloud.particle")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DEVICE_ID = re.compile(r"^[0-9a-fA-F]{24}\Z")


@dataclass(frozen=True)
class Settings:
    """What `factory sim-cloud particle` is told; building it does no I/O."""

    db: Path
    host: str = "127.0.0.1"
    port: int = 8080


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)


class ParticleError(Exception):
    """Raised by a handler; answered as Particle's `{"ok": false, "error": …}`, or with
    `body` as given (OAuth's invalid_token)."""

    def __init__(self, status: int, error: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(error)
        self.status, self.body = status, body or {"ok": False, "error": error}


def invalid_token() -> ParticleError:
    return ParticleError(401, "invalid_token", {
        "error": "invalid_token", "error_description": "The access token provided is invalid."})


def make_app(settings: Settings) -> web.Application:
    """The simulated Particle cloud as an aiohttp app; opens its store on start-up."""
    app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_store)
    app.add_routes([
        web.post("/v1/products/{product}/devices", import_devices),
        web.get("/v1/products/{product}/devices/{device}", get_device),
        web.post("/v1/products/{product}/device_claims", product_claim_code),
        web.post("/v1/device_claims", claim_code),
    ])
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    app[STORE] = await Store.open(app[SETTINGS].db)
    yield
    await app[STORE].close()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a JSON body, as Particle's do."""
    try:
        return await handler(request)
    except ParticleError as exc:
        return web.json_response(exc.body, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"ok": False, "error": f"{exc.reason}: {request.method} "
                                  f"{request.path} is not simulated (docs/upstream-particle.md)"},
                                 status=exc.status)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return web.json_response({"ok": False, "error": "the simulated Particle cloud hit an "
                                  "unexpected error; see its log"}, status=500)


async def _user(request: web.Request) -> User:
    """The user of `Authorization: Bearer <token>` (or `access_token=`, which Particle also
    takes); 401 as Particle's OAuth answers it."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        token = request.query.get("access_token", "")
    user = await request.app[STORE].user_of(token.strip()) if token.strip() else None
    if user is None:
        raise invalid_token()
    return user


async def _product(request: web.Request) -> Product:
    product = await request.app[STORE].product(request.match_info["product"])
    if product is None:
        raise ParticleError(404, "Product not found")
    return product


async def _member(request: web.Request) -> tuple[User, Product]:
    user, product = await _user(request), await _product(request)
    if not await request.app[STORE].is_member(user.name, product.id):
        raise ParticleError(403, "Permission Denied")
    return user, product


async def _identifiers(request: web.Request) -> list[str]:
    """`{"id": …}` as JSON or a form, or a `file` of one identifier a line (particle-cli)."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ParticleError(400, "Invalid JSON body") from None
        value = body.get("id") if isinstance(body, dict) else None
        return [value] if isinstance(value, str) else []
    form = await request.post()
    upload = form.get("file")
    if isinstance(upload, web.FileField):
        text = upload.file.read().decode("utf-8", errors="replace")
        return [line.strip() for line in text.splitlines() if line.strip()]
    value = form.get("id")
    return [value] if isinstance(value, str) else []


async def import_devices(request: web.Request) -> web.Response:
    """POST /v1/products/:product/devices: each identifier sorted into Particle's lists."""
    _, product = await _member(request)
    identifiers = await _identifiers(request)
    if not identifiers:
        raise ParticleError(400, "Please specify a device id or a file of device ids")
    lists: dict[str, list[str]] = {k: [] for k in (
        "updatedDeviceIds", "existingDeviceIds", "nonmemberDeviceIds", "invalidDeviceIds",
        "protectedDeviceIds")}
    store = request.app[STORE]
    async with store.transaction() as db:
        for given in identifiers:
            lists[await _import_one(store, db, product, given)].append(given)
    return web.json_response({"updated": len(lists["updatedDeviceIds"]), **lists})


async def _import_one(store: Store, db: Any, product: Product, given: str) -> str:
    if not _DEVICE_ID.match(given):
        return "invalidDeviceIds"
    device_id = given.lower()
    async with db.execute("SELECT * FROM devices WHERE id = ?", (device_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        await db.execute("INSERT INTO devices (id, product_id) VALUES (?, ?)",
                         (device_id, product.id))
        return "updatedDeviceIds"
    if row["product_id"] == product.id:
        return "existingDeviceIds"
    if row["protected"]:
        return "protectedDeviceIds"
    if row["product_id"] is not None:  # particle-cli: "another product yields invalid"
        return "invalidDeviceIds"
    if row["owner"] is not None and not await store.is_member(row["owner"], product.id):
        return "nonmemberDeviceIds"
    await db.execute("UPDATE devices SET product_id = ? WHERE id = ?", (product.id, device_id))
    return "updatedDeviceIds"


async def get_device(request: web.Request) -> web.Response:
    """GET /v1/products/:product/devices/:id: a device of the product (DeviceInfo)."""
    _, product = await _member(request)
    row = await request.app[STORE].device(request.match_info["device"])
    if row is None or row["product_id"] != product.id:
        raise ParticleError(404, "Device not found")
    return web.json_response({
        "id": row["id"], "name": None, "owner": row["owner"], "product_id": product.id,
        "online": False, "connected": False, "development": False, "quarantined": False,
        "denied": False, "cellular": False, "notes": None})


async def product_claim_code(request: web.Request) -> web.Response:
    """POST /v1/products/:product/device_claims: only a customer of the product may."""
    user, product = await _user(request), await _product(request)
    if user.role != "customer" or user.product_id != product.id:
        raise ParticleError(403, "Only a customer of this product can create its claim codes")
    return await _claim_answer(request, user, product.id)


async def claim_code(request: web.Request) -> web.Response:
    """POST /v1/device_claims: a claim code for the token's own account."""
    user = await _user(request)
    return await _claim_answer(request, user, user.product_id)


async def _claim_answer(request: web.Request, user: User, product_id: int | None,
                        ) -> web.Response:
    store = request.app[STORE]
    code = await store.new_claim_code(user.name, product_id)
    return web.json_response({"claim_code": code,
                              "device_ids": await store.owners_devices(user.name, product_id)})


async def serve(settings: Settings, products: tuple[tuple[int, str], ...] = ()) -> None:
    """Run until SIGTERM or SIGINT with `products` (id, slug) known, logging where."""
    store = await Store.open(settings.db)
    try:
        for product_id, slug in products:
            await store.add_product(product_id, slug)
    finally:
        await store.close()
    runner = web.AppRunner(make_app(settings), handle_signals=False)
    await runner.setup()
    try:
        await start_site(runner, settings.host, settings.port)
        for host, port in (a[:2] for a in runner.addresses):
            log.info("simulated Particle cloud listening on http://%s:%d/ (db %s)", host, port,
                     settings.db)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
