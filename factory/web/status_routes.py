"""The operators' status page: GET / (HTML), GET /api/v1/status (its JSON snapshot),
GET /api/v1/status/events (the same snapshot as server-sent events, on every change; with
?view=page the page's own stream: its live parts as rendered HTML) and the page's own CSS and
JavaScript under /static/.

Read-only. Open to the networks in [status] open_networks; elsewhere it needs a viewer or
operator token: as a bearer token, or given once as /?token=... which the station keeps in
an HttpOnly cookie (a browser's EventSource cannot send headers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator
from importlib import resources

from aiohttp import web

from factory.journal.errors import JournalError
from factory.status import snapshot
from factory.status.feed import Snapshot, StatusFeed
from factory.web.auth import PERMISSIONS, REFRESH_SECONDS, authorize, from_networks
from factory.web.keys import CONFIG, JOURNAL, LIVE, STATUS_FEED, TOKENS
from factory.web.problems import Forbidden, NotFound, Unauthorized
from factory.web.status_html import live_parts, render

log = logging.getLogger("factory.web")
COOKIE = "factory_status_token"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest a browser keeps a cookie: a kiosk stays in
ASSETS = {"status.css": "text/css", "status.js": "text/javascript"}
RETRY_MS = 2000  # how soon a page's EventSource reconnects after losing the station
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"]+")


class _HideTokens(logging.Filter):
    """Access log lines never carry a token given as /?token=..."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = _TOKEN_IN_QUERY.sub(r"\1(hidden)", record.msg)
            line = getattr(record, "first_request_line", None)
            if isinstance(line, str):
                record.first_request_line = _TOKEN_IN_QUERY.sub(r"\1(hidden)", line)
        return True


_HIDE_TOKENS = _HideTokens()


async def allow(request: web.Request) -> None:
    """Let the request through, or raise the 401/403 problem that says how to get in."""
    if from_networks(request, request.app[CONFIG].status.open_networks):
        return
    if "Authorization" in request.headers:
        await authorize(request, request.app[TOKENS], "read")
        return
    token = request.cookies.get(COOKIE)
    if not token:
        raise Unauthorized("the status page needs a viewer token: open /?token=<token> once on "
                           "this screen (make one with 'factory token new --role viewer "
                           "--name NAME'), or list the screen's network in [status] "
                           "open_networks")
    await _check(request, token, "the token this screen saved")


async def _check(request: web.Request, token: str, what: str) -> None:
    principal = await request.app[TOKENS].lookup(token)
    if principal is None:
        raise Unauthorized(f"{what} is unknown or revoked: open /?token=<token> with a "
                           "current viewer token")
    if principal.role not in PERMISSIONS["read"]:
        raise Forbidden(f"a {principal.role} token may not read the status; use a viewer "
                        "or operator token")


async def take_token(request: web.Request) -> None:
    """With ?token=: check it, keep it in the screen's cookie and send the browser to the
    address without it (so it leaves the address bar and the history); else nothing."""
    token = request.query.get("token")
    if token is not None:
        await _check(request, token.strip(), "the token in the address")
        response = web.HTTPSeeOther(request.rel_url.with_query(None))
        response.set_cookie(COOKIE, token.strip(), max_age=COOKIE_MAX_AGE, path="/",
                            httponly=True, samesite="Strict")
        raise response


async def page(request: web.Request) -> web.Response:
    """GET /: the page, rendered with the current snapshot; ?token= saves a token first."""
    await take_token(request)
    await allow(request)
    body = render(await request.app[STATUS_FEED].current())
    return web.Response(text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


async def status(request: web.Request) -> web.Response:
    """GET /api/v1/status: the snapshot the page shows."""
    await allow(request)
    return web.json_response(await request.app[STATUS_FEED].current(),
                             headers={"Cache-Control": "no-store"})


async def events(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/status/events: `status` events carrying the snapshot, first at once, then
    after each change (coalesced) and at least every refresh interval. With ?view=page,
    `page` events carry the page's live parts instead, rendered as the page renders them."""
    await allow(request)
    as_page = request.query.get("view") == "page"
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-store",
               "X-Accel-Buffering": "no"}
    if request.method == "HEAD":
        # A streamed HEAD answer would still carry the events, and the client would read
        # them as the next response on its kept-alive connection.
        return web.Response(headers=headers)
    feed = request.app[STATUS_FEED]
    with feed.subscribe() as updates:  # before the first build: no change slips between
        first = await feed.first()
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)

        async def send() -> None:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            async for snap in _chain(first, updates):
                event, data = ("page", live_parts(snap)) if as_page else ("status", snap)
                await response.write(f"event: {event}\ndata: ".encode()
                                     + json.dumps(data).encode() + b"\n\n")

        sending = asyncio.create_task(send())
        watching = asyncio.create_task(_until_refused(request))
        try:
            await asyncio.wait((sending, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sending, watching):
                task.cancel()
            results = await asyncio.gather(sending, watching, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                    result, (asyncio.CancelledError, ConnectionResetError)):
                raise result  # a bug, not the page going away
    return response


async def _until_refused(request: web.Request) -> None:
    """Return once the request's token would be refused (revoked, or its role changed): an
    open stream ends then, as a new request would be refused. The token cache reloads every
    REFRESH_SECONDS, so a revoked token's stream ends within about twice that."""
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        try:
            await allow(request)
        except (Unauthorized, Forbidden) as refused:
            log.info("status stream to %s closed: %s", request.remote, refused.detail)
            return
        except JournalError:
            continue  # the tokens cannot be read now: the cache keeps the last ones


async def _chain(first: Snapshot,
                 rest: AsyncIterable[Snapshot]) -> AsyncIterator[Snapshot]:
    yield first
    async for item in rest:
        yield item


async def asset(request: web.Request) -> web.Response:
    """GET /static/{name}: the page's CSS and JavaScript, shipped inside the package."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise NotFound(f"no static file {name!r}; there are: {', '.join(sorted(ASSETS))}")
    body = resources.files("factory.web").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=ASSETS[name],
                        headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    """The page's routes, its feed (started and stopped with the app) and the journal hook."""
    config, journal, live = app[CONFIG], app[JOURNAL], app[LIVE]
    access_log = logging.getLogger("aiohttp.access")
    if _HIDE_TOKENS not in access_log.filters:
        access_log.addFilter(_HIDE_TOKENS)

    async def build() -> Snapshot:
        return await snapshot.build(config, journal, live)

    feed = StatusFeed(build, live.signature)
    app[STATUS_FEED] = feed

    async def run_feed(_: web.Application) -> AsyncIterator[None]:
        stop_watching = journal.on_change(feed.poke)
        task = asyncio.create_task(feed.run(), name="status-feed")
        yield
        stop_watching()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def let_pages_go(_: web.Application) -> None:
        feed.close()  # open event streams end now, not at the server's shutdown timeout

    app.cleanup_ctx.append(run_feed)
    app.on_shutdown.append(let_pages_go)
    app.router.add_get("/", page)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/status/events", events)
    app.router.add_get("/static/{name}", asset)
