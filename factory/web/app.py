"""The aiohttp application factory: typed app keys, one error middleware, the routes."""

from __future__ import annotations

from aiohttp import web

from factory.config import StationConfig
from factory.journal.sqlite import Journal
from factory.web import api, ioto, openapi
from factory.web.auth import TokenCache
from factory.web.keys import CONFIG, JOURNAL, TOKENS
from factory.web.problems import problem_middleware


def make_app(config: StationConfig, journal: Journal) -> web.Application:
    """The station's HTTP app over an open journal (the caller owns the journal)."""
    app = web.Application(middlewares=[problem_middleware],
                          client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[JOURNAL] = journal
    app[TOKENS] = TokenCache(journal)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/api/v1/openapi.json", openapi.handler)
    app.router.add_post("/api/v1/ucis", api.issue)
    app.router.add_get("/api/v1/units", api.list_units)
    app.router.add_get("/api/v1/units/{uci}", api.get_unit)
    app.router.add_post("/api/v1/units/{uci}/void", api.void_unit)
    app.router.add_post("/ioto/serialize", ioto.serialize)
    return app
