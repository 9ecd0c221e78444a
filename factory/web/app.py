"""The aiohttp application factory: typed app keys, one error middleware, the routes."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from factory.config import StationConfig
from factory.journal.sqlite import Journal
from factory.metrics import Metrics
from factory.web import api, ioto, openapi
from factory.web.auth import TokenCache
from factory.web.keys import CONFIG, JOURNAL, METRICS, TOKENS
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
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(config: StationConfig, journal: Journal,
             metrics: Metrics | None = None) -> web.Application:
    """The station's HTTP app over an open journal (the caller owns the journal)."""
    app = web.Application(middlewares=[count_responses, problem_middleware],
                          client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[JOURNAL] = journal
    app[TOKENS] = TokenCache(journal)
    app[METRICS] = metrics or Metrics(config.journal)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/api/v1/openapi.json", openapi.handler)
    app.router.add_post("/api/v1/ucis", api.issue)
    app.router.add_get("/api/v1/units", api.list_units)
    app.router.add_get("/api/v1/units/{uci}", api.get_unit)
    app.router.add_post("/api/v1/units/{uci}/void", api.void_unit)
    app.router.add_get("/api/v1/outbox", api.outbox)
    app.router.add_post("/ioto/serialize", ioto.serialize)
    return app
