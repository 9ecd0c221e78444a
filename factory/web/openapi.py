"""The OpenAPI 3.1 description of the station API (a test checks it against the routes)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from factory import __version__

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_UCI_PARAM = {
    "name": "uci", "in": "path", "required": True,
    "description": "A UCI in any form: canonical, grouped, with or without check symbol.",
    "schema": {"type": "string", "minLength": 16, "maxLength": 40},
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _PROBLEM for code in codes}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Factory station API",
        "version": __version__,
        "description": "Issue Unique Claim IDs (UCIs) and read the station's journal. "
                       "Errors are application/problem+json (RFC 9457).",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Problem": {
                "type": "object", "required": ["type", "title", "status", "detail"],
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"},
                               "instance": {"type": "string"}, "field": {"type": "string"}},
            },
            "Event": {
                "type": "object",
                "required": ["seq", "kind", "at", "station", "actor", "data", "hash"],
                "properties": {"seq": {"type": "integer"}, "kind": {"type": "string"},
                               "at": {"type": "string", "format": "date-time"},
                               "station": {"type": "string"}, "actor": {"type": "string"},
                               "data": {"type": "object"}, "hash": {"type": "string"}},
            },
            "Unit": {
                "type": "object",
                "required": ["uci", "human", "product", "hardware_id", "state", "station",
                             "created_at", "updated_at"],
                "properties": {
                    "uci": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{16}$"},
                    "human": {"type": "string"}, "product": {"type": "string"},
                    "hardware_id": {"type": ["string", "null"]}, "state": {"type": "string"},
                    "station": {"type": "string"}, "created_at": {"type": "string"},
                    "updated_at": {"type": "string"},
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                },
            },
        },
        "responses": {
            "Problem": {"description": "What went wrong and what to do",
                        "content": {"application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/healthz": {"get": {
            "summary": "Liveness and journal check", "security": [],
            "responses": {"200": _json({"type": "object"}, "The station is up"),
                          **_errors(503)}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text format)", "security": [],
            "responses": {"200": {"description": "Counters, histograms and gauges",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/api/v1/openapi.json": {"get": {
            "summary": "This document", "security": [],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")}}},
        "/api/v1/ucis": {"post": {
            "summary": "Issue one UCI (optionally for a hardware id) or a batch of `count`",
            "description": "Roles: device, operator. The same product and hardware id always "
                           "get the same UCI (200); a new one is 201. An Idempotency-Key header "
                           "replays the first answer for the same request.",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["product"], "additionalProperties": False,
                "properties": {
                    "product": {"type": "string"},
                    "hardware_id": {"type": "string", "description":
                                    "MAC (normalised to 12 upper-case hex) or chip serial"},
                    "count": {"type": "integer", "minimum": 1, "maximum": 10000},
                }}}}},
            "responses": {
                "201": _json({"type": "object"}, "Issued: {uci, human, product, hardware_id} "
                             "or, with count, {product, count, ucis}"),
                "200": _json({"type": "object"}, "Already issued for this hardware id or "
                             "Idempotency-Key"),
                **_errors(400, 401, 403, 413, 422, 503)}}},
        "/api/v1/units": {"get": {
            "summary": "Units, newest first", "description": "Roles: operator, viewer.",
            "parameters": [
                {"name": "state", "in": "query", "schema": {"type": "string"}},
                {"name": "product", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _json({"type": "object", "properties": {
                    "units": {"type": "array", "items": {"$ref": "#/components/schemas/Unit"}},
                    "next_cursor": {"type": ["string", "null"]}}}, "A page of units"),
                **_errors(400, 401, 403, 422)}}},
        "/api/v1/units/{uci}": {"get": {
            "summary": "One unit with its events", "description": "Roles: operator, viewer.",
            "parameters": [_UCI_PARAM],
            "responses": {"200": _json({"$ref": "#/components/schemas/Unit"}, "The unit"),
                          **_errors(400, 401, 403, 404)}}},
        "/api/v1/units/{uci}/void": {"post": {
            "summary": "Void a unit; its UCI is never reused", "description": "Role: operator.",
            "parameters": [_UCI_PARAM],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["reason"], "additionalProperties": False,
                "properties": {"reason": {"type": "string", "minLength": 1,
                                          "maxLength": 500}}}}}},
            "responses": {"200": _json({"$ref": "#/components/schemas/Unit"}, "Voided"),
                          **_errors(400, 401, 403, 404, 409, 413, 422, 503)}}},
        "/api/v1/outbox": {"get": {
            "summary": "The upstream backlog: counts by state, oldest pending age, entries",
            "description": "Roles: operator, viewer. Entries oldest first; `state` defaults "
                           "to pending.",
            "parameters": [
                {"name": "state", "in": "query",
                 "schema": {"type": "string", "enum": ["pending", "failed", "done"]}},
                {"name": "uci", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            ],
            "responses": {
                "200": _json({"type": "object", "required": [
                    "pending", "failed", "done", "oldest", "oldest_age_seconds", "entries"],
                    "properties": {
                        "pending": {"type": "integer"}, "failed": {"type": "integer"},
                        "done": {"type": "integer"},
                        "oldest": {"type": ["string", "null"]},
                        "oldest_age_seconds": {"type": ["number", "null"]},
                        "entries": {"type": "array", "items": {"type": "object"}}}},
                    "The backlog"),
                **_errors(400, 401, 403, 422)}}},
        "/ioto/serialize": {"post": {
            "summary": "Embedthis Ioto factory serialization",
            "description": "No token: allowed only from the networks in [ioto] networks. The "
                           "agent posts its device section and reads `id` from the reply.",
            "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["product"],
                "properties": {"product": {"type": "string"}, "name": {"type": "string"},
                               "model": {"type": "string"},
                               "hardware_id": {"type": "string"}, "mac": {"type": "string"}},
            }}}},
            "responses": {
                "200": _json({"type": "object", "required": ["id"],
                              "properties": {"id": {"type": "string"}}}, "The unit's UCI"),
                **_errors(400, 403, 413, 422, 503)}}},
    },
}


async def handler(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return web.json_response(DOCUMENT)
