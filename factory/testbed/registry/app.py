"""The registry's HTTP edge: settings, the app factory, bearer auth, problem responses."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from factory.sdnotify import Notifier
from factory.testbed.registry import handlers
from factory.testbed.registry.ca import CertificateAuthority
from factory.testbed.registry.errors import BadRequest, Problem
from factory.testbed.registry.keys import CA, SETTINGS, STORE, Settings
from factory.testbed.registry.store import Store
from factory.web.app import http_limits
from factory.web.body import DEFAULT_BODY_TIMEOUT
from factory.web.listen import start_site
from factory.web.problems import response

log = logging.getLogger("factory.registry")
MAX_BODY = 64 * 1024


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(settings: Settings) -> web.Application:
    """The registry as an aiohttp app; opens the store and the CA on start-up."""
    app = web.Application(middlewares=[problem_middleware], client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_resources)
    app.add_routes([
        web.post("/v1/devices", handlers.register),
        web.get("/v1/devices/{id}", handlers.get_device),
        web.post("/v1/devices/{id}/preclaim", handlers.preclaim),
        web.post("/v1/devices/{id}/provision", handlers.provision),
        web.post("/v1/claims", handlers.claim),
        web.delete("/v1/claims/{id}", handlers.release),
    ])
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[CA] = await asyncio.to_thread(CertificateAuthority.open, settings.ca_key,
                                      settings.ca_cert)
    app[STORE] = await Store.open(settings.db)
    yield
    await app[STORE].close()


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as a problem body; the Idempotency-Key is echoed on every answer."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 200 and key.isascii() and key.isprintable()):
        problem: Problem = BadRequest("Idempotency-Key must be 1..200 printable ASCII "
                                      "characters")
        return response(problem, request)
    try:
        answer = await handler(request)
    except Problem as raised:
        answer = response(raised, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = Problem({404: f"no route {request.path}; see docs/upstream-http.md",
                           413: f"the body is over {MAX_BODY} bytes; send a smaller one"}
                          .get(exc.status, exc.reason))
        problem.status, problem.title = exc.status, exc.reason
        problem.slug = exc.reason.lower().replace(" ", "-")
        problem.headers.update({k: v for k, v in exc.headers.items() if k == "Allow"})
        answer = response(problem, request)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        answer = response(Problem("the registry hit an unexpected error; it is in the "
                                  "registry log"), request)
    if key is not None and "Idempotency-Key" not in answer.headers:
        answer.headers["Idempotency-Key"] = key
    return answer


async def serve(settings: Settings) -> None:
    """Run the registry until SIGTERM or SIGINT, logging where it listens; tells systemd
    when it is ready (Type=notify) and feeds its watchdog."""
    notifier = Notifier.from_environ()
    runner = web.AppRunner(make_app(settings), handle_signals=False,
                           **http_limits(DEFAULT_BODY_TIMEOUT))
    await runner.setup()
    watchdog: asyncio.Task[None] | None = None
    try:
        await start_site(runner, settings.host, settings.port, backlog=1024)
        urls = [f"http://{host}:{port}/" for host, port in (a[:2] for a in runner.addresses)]
        for url in urls:
            log.info("registry listening on %s (db %s, CA %s)", url, settings.db,
                     settings.ca_cert)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        watchdog = asyncio.create_task(notifier.feed_watchdog(), name="watchdog")
        notifier.ready(f"serving {' '.join(urls)}; db {settings.db}")
        await stop.wait()
        log.info("registry stopping")
        notifier.stopping("stopping: finishing requests in flight")
    finally:
        await runner.cleanup()
        if watchdog is not None:
            watchdog.cancel()
        notifier.close()
