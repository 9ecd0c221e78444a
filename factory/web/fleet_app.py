"""`factory fleet serve`: the fleet page over the fleet center's database. GET / (HTML: every
station with its lag, its day and its conflicts; ?q= finds a unit by UCI in any form or by
hardware id, with its events from every station), GET /api/v1/fleet (the same as JSON) and
GET /api/v1/fleet/units?q= (a search as JSON), and the status page's CSS.

Read-only, and let in as the status page lets people in: the networks in [status]
open_networks, else a viewer or operator token of this station's journal (a bearer token, or
/?token=... once, kept in a cookie).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from aiohttp import web

from factory import clock
from factory.config import StationConfig
from factory.fleet import center, view
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.status.shifts import journal_time
from factory.web import fleet_html, status_routes
from factory.web.auth import TokenCache
from factory.web.keys import CONFIG, TOKENS
from factory.web.listen import start_site
from factory.web.problems import BadRequest, CenterUnavailable, problem_middleware

log = logging.getLogger("factory.fleet")
T = TypeVar("T")
MAX_QUERY = 300  # characters of a search (a claim URL is well under it)


class Center:
    """One connection to the fleet center for the page, made again after it broke."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def read(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await center.connect(self.url)
            return await work(self._conn)
        except (center.CenterError, psycopg.Error, OSError) as exc:
            await self.close()
            raise CenterUnavailable(f"the fleet center does not answer ({exc}); the page "
                                    "shows it again once it does") from exc

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._conn.close()
            self._conn = None


CENTER = web.AppKey("fleet_center", Center)


def _query(request: web.Request) -> str:
    text = request.query.get("q", "").strip()
    if len(text) > MAX_QUERY:
        raise BadRequest(f"q: {len(text)} characters is longer than any UCI, claim URL or "
                         f"hardware id (at most {MAX_QUERY})", field="q")
    return text


async def _search(request: web.Request, text: str) -> list[dict[str, Any]]:
    try:
        return await request.app[CENTER].read(lambda conn: view.search(conn, text))
    except view.BadQuery as exc:
        raise BadRequest(f"q: {exc}; give a UCI (any form, or the label's claim URL) or a "
                         "hardware id (a MAC, a chip serial)", field="q") from exc


async def _overview(request: web.Request) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    since = journal_time(datetime.combine(clock.now().astimezone().date(), datetime.min.time())
                         .astimezone())

    async def read(conn: psycopg.AsyncConnection[Any]) -> tuple[list[Any], list[Any]]:
        return await view.fleet(conn, since), await view.conflicts(conn)

    return await request.app[CENTER].read(read)


async def page(request: web.Request) -> web.Response:
    """GET /: the fleet page; ?q= with a search's units (or what was wrong with it)."""
    await status_routes.take_token(request)
    await status_routes.allow(request)
    text, status = _query(request), 200
    units: list[dict[str, Any]] = []
    stations, conflicts = await _overview(request)
    try:
        units = await _search(request, text) if text else []
        body = fleet_html.render(stations, conflicts, text, units)
    except BadRequest as exc:  # a person's typo: said on the page, not as JSON
        body, status = fleet_html.render(stations, conflicts, text, [], exc.detail), 400
    return web.Response(text=body, content_type="text/html", status=status,
                        headers={"Cache-Control": "no-store"})


async def overview(request: web.Request) -> web.Response:
    """GET /api/v1/fleet: every station and the hardware conflicts."""
    await status_routes.allow(request)
    stations, conflicts = await _overview(request)
    return web.json_response({"stations": stations, "conflicts": conflicts},
                             headers={"Cache-Control": "no-store"})


async def units(request: web.Request) -> web.Response:
    """GET /api/v1/fleet/units?q=: the units a UCI (any form) or hardware id names."""
    await status_routes.allow(request)
    text = _query(request)
    if not text:
        raise BadRequest("q: give a UCI (any form, or the label's claim URL) or a hardware "
                         "id, e.g. ?q=7KQ2-M9XD-3FHT-0W5R-W", field="q")
    found = await _search(request, text)
    return web.json_response({"query": text, "units": found},
                             headers={"Cache-Control": "no-store"})


def make_fleet_app(config: StationConfig, journal: Journal, url: str) -> web.Application:
    """The fleet page's app: tokens from `journal`, data from the center at `url`."""
    app = web.Application(middlewares=[problem_middleware])
    app[CONFIG] = config
    app[TOKENS] = TokenCache(journal)
    app[CENTER] = Center(url)

    async def close_center(_: web.Application) -> AsyncIterator[None]:
        yield
        await app[CENTER].close()

    app.cleanup_ctx.append(close_center)
    app.router.add_get("/", page)
    app.router.add_get("/api/v1/fleet", overview)
    app.router.add_get("/api/v1/fleet/units", units)
    app.router.add_get("/static/{name}", status_routes.asset)
    return app


async def serve_fleet(config: StationConfig, url: str, host: str, port: int) -> None:
    """Serve the fleet page until SIGTERM or SIGINT."""
    journal = await open_journal(config.journal_location, config.station_id, create=False)
    runner = web.AppRunner(make_fleet_app(config, journal, url), handle_signals=False)
    try:
        await runner.setup()
        await start_site(runner, host, port)
        for address in runner.addresses:
            log.info("fleet page on http://%s:%s/ (center %s)", address[0], address[1],
                     url.rpartition("@")[2])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await journal.close()
