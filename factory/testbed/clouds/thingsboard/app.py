"""The simulated ThingsBoard's HTTP edge: the app factory, the routes, ThingsBoard's error
bodies for every failure, and `serve` for `factory sim-cloud thingsboard`."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from factory.testbed.clouds.thingsboard import handlers as h
from factory.testbed.clouds.thingsboard.auth import GENERAL, TbError, error
from factory.testbed.clouds.thingsboard.keys import SETTINGS, STORE, Settings
from factory.testbed.clouds.thingsboard.store import Store
from factory.web.listen import start_site

log = logging.getLogger("factory.sim_cloud.thingsboard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TELEMETRY = "/api/plugins/telemetry"


def make_app(settings: Settings) -> web.Application:
    """The simulated ThingsBoard as an aiohttp app; opens its store on start-up."""
    app = web.Application(middlewares=[error_middleware], client_max_size=256 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_store)
    app.add_routes([
        web.post("/api/auth/login", h.login),
        web.post("/api/auth/token", h.refresh),
        web.get("/api/auth/user", h.me),
        web.get("/api/deviceProfileInfos", h.profile_infos),
        web.post("/api/deviceProfile", h.save_profile),
        web.get("/api/tenant/devices", h.tenant_device),  # ?deviceName= (every version)
        web.get("/api/tenant/device", h.tenant_device),  # ?deviceName= (4.x)
        web.post("/api/device", h.save_device),
        web.get("/api/device/{id}", h.get_device),
        web.post(TELEMETRY + "/{id}/{scope}", h.save_attributes),
        web.post(TELEMETRY + "/{type}/{id}/{scope}", h.save_attributes),
        web.post(TELEMETRY + "/{type}/{id}/attributes/{scope}", h.save_attributes),
        web.get(TELEMETRY + "/{type}/{id}/values/attributes", h.get_attributes),
        web.get(TELEMETRY + "/{type}/{id}/values/attributes/{scope}", h.get_attributes),
        web.delete(TELEMETRY + "/{type}/{id}/{scope}", h.delete_attributes),
        web.post("/api/customer/device/{name}/claim", h.claim),
        web.delete("/api/customer/device/{name}/claim", h.reclaim),
    ])
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    app[STORE] = await Store.open(app[SETTINGS].db)
    yield
    await app[STORE].close()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as ThingsBoard's error body."""
    try:
        return await handler(request)
    except TbError as exc:
        return error(exc.status, exc.message, exc.code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, f"{exc.reason}: {request.method} {request.path} is not "
                                 f"simulated (docs/upstream-thingsboard.md)", GENERAL)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error(500, "the simulated ThingsBoard hit an unexpected error; see its log",
                     GENERAL)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, logging where it listens."""
    runner = web.AppRunner(make_app(settings), handle_signals=False)
    await runner.setup()
    try:
        await start_site(runner, settings.host, settings.port)
        for host, port in (a[:2] for a in runner.addresses):
            log.info("simulated ThingsBoard listening on http://%s:%d/ (db %s)", host, port,
                     settings.db)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
