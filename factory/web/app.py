"""The aiohttp application factory: typed app keys, one error middleware, the routes."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from factory.config import StationConfig
from factory.journal.backlog import backlog
from factory.journal.interface import Journal
from factory.labels.making import LabelMaker
from factory.status.metrics import Metrics
from factory.status.snapshot import LiveSources, fleet_lag
from factory.units.scans import ScanDesk
from factory.web import api, ioto, openapi, scans, status_routes
from factory.web.auth import TokenCache
from factory.web.body import BODY_TIMEOUT
from factory.web.keys import CONFIG, JOURNAL, LABEL_MAKER, LIVE, METRICS, SCAN_DESK, TOKENS
from factory.web.problems import Handler, problem_middleware


@web.middleware
async def count_responses(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer counted by route pattern (not path: UCIs would explode the labels)."""
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "(no route)"
    request.app[METRICS].http.labels(route, str(response.status)).inc()
    return response


async def scrape(request: web.Request) -> web.Response:
    """GET /metrics in the Prometheus text format (no token: read-only counters)."""
    metrics = request.app[METRICS]
    outbox = await backlog(request.app[JOURNAL], limit=0)
    metrics.observe_outbox(outbox["pending"], outbox["failed"], outbox["oldest_age_seconds"])
    if (shipping := request.app[LIVE].fleet) is not None:
        lag = await fleet_lag(request.app[JOURNAL], shipping)
        metrics.observe_fleet(lag["events"], lag["seconds"], lag["away"], lag["refused"])
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# aiohttp's parser refuses a request line or header over 8190 bytes and more than 128 headers
# (400, connection closed); spelt out here so an aiohttp upgrade cannot loosen them.
MAX_LINE = 8190
MAX_HEADERS = 128


def http_limits(client_timeout: float) -> dict[str, Any]:
    """AppRunner options: the parser's limits, and `client_timeout` for a request's head. The
    keep-alive timer runs from the moment a client connects, so a client that connects and
    sends nothing, or dribbles its headers (slow loris), is cut off after it too."""
    return {"keepalive_timeout": client_timeout, "max_line_size": MAX_LINE,
            "max_field_size": MAX_LINE, "max_headers": MAX_HEADERS}


def make_app(config: StationConfig, journal: Journal, metrics: Metrics | None = None,
             live: LiveSources | None = None,
             maker: LabelMaker | None = None,
             desk: ScanDesk | None = None) -> web.Application:
    """The station's HTTP app over an open journal (the caller owns the journal); `live`
    holds the fixtures, printer and upstream the status page shows; `maker` makes the labels
    of units their own agent serializes."""
    app = web.Application(middlewares=[count_responses, problem_middleware],
                          client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[BODY_TIMEOUT] = config.client_timeout
    app[JOURNAL] = journal
    app[TOKENS] = TokenCache(journal)
    app[METRICS] = metrics or Metrics(config.journal)
    app[LIVE] = live or LiveSources()
    if maker is not None:
        app[LABEL_MAKER] = maker
    app[SCAN_DESK] = desk or ScanDesk()
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/api/v1/openapi.json", openapi.handler)
    app.router.add_post("/api/v1/ucis", api.issue)
    app.router.add_get("/api/v1/units", api.list_units)
    app.router.add_get("/api/v1/units/{uci}", api.get_unit)
    app.router.add_post("/api/v1/units/{uci}/void", api.void_unit)
    app.router.add_get("/api/v1/outbox", api.outbox)
    app.router.add_post("/ioto/serialize", ioto.serialize)
    app.router.add_post("/api/v1/fixtures/{name}/scan", scans.scan)
    status_routes.add_routes(app)
    return app
