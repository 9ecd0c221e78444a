"""The registry's HTTP edge: settings, the app factory, bearer auth, problem responses."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from factory.registry.ca import CertificateAuthority
from factory.registry.errors import BadRequest, Forbidden, Problem, RegistryUnauthorized
from factory.registry.store import Store, TokenKind
from factory.sdnotify import Notifier
from factory.web.app import http_limits
from factory.web.body import DEFAULT_BODY_TIMEOUT
from factory.web.problems import response

log = logging.getLogger("factory.registry")
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Settings:
    """What `factory registry serve` is told; building it does no I/O."""

    db: Path
    host: str = "127.0.0.1"
    port: int = 8700
    endpoint: str = "mqtts://localhost:8883"
    poll_delay: int = 10

    @property
    def ca_key(self) -> Path:
        return self.db.with_name(self.db.name + ".ca-key.pem")

    @property
    def ca_cert(self) -> Path:
        return self.db.with_name(self.db.name + ".ca.pem")


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
CA = web.AppKey("ca", CertificateAuthority)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(settings: Settings) -> web.Application:
    """The registry as an aiohttp app; opens the store and the CA on start-up."""
    from factory.registry import handlers  # handlers use the keys above

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


def json_response(body: object, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


async def serve(settings: Settings) -> None:
    """Run the registry until SIGTERM or SIGINT, logging where it listens; tells systemd
    when it is ready (Type=notify) and feeds its watchdog."""
    notifier = Notifier.from_environ()
    runner = web.AppRunner(make_app(settings), handle_signals=False,
                           **http_limits(DEFAULT_BODY_TIMEOUT))
    await runner.setup()
    watchdog: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        await site.start()
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
