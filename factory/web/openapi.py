"""The OpenAPI 3.1 description of the station API (a test checks it against the routes)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from factory import __version__
from factory.states import (
    COUNTER_NAMES,
    EVENT_KINDS,
    FIXTURE_STATES,
    OUTBOX_STATES,
    PRINTER_STATES,
    TONES,
    UNIT_STATES,
)

_PROBLEM = {"$ref": "#/components/responses/Problem"}
# The names states.py defines, as the document's enums (tests/test_states.py pins them).
_UNIT_STATE = {"type": "string", "enum": list(UNIT_STATES)}
_EVENT_KIND = {"type": "string", "enum": list(EVENT_KINDS)}
# Each operation's `security` names the token roles it accepts (any one of them will do;
# OpenAPI 3.1 allows role names in a bearer scheme's list). tests/test_security_routes.py
# calls every route with every role and checks the code against these lists.
# `x-open-networks` names the config key whose networks may call without a token.
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
                "properties": {"seq": {"type": "integer"}, "kind": _EVENT_KIND,
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
                    "hardware_id": {"type": ["string", "null"]}, "state": _UNIT_STATE,
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
            "security": [{"bearer": ["device", "operator"]}],
            "description": "Roles: device, operator. The same product and hardware id always "
                           "get the same UCI (200); a new one is 201. An Idempotency-Key header "
                           "replays the first answer for the same request. A batch is answered "
                           "once all its UCIs are durable; a big one is written in parts, so "
                           "singles are not held up behind it. A batch cut off between parts "
                           "is never answered with part of its UCIs (a 503 says how many were "
                           "journaled and stay unused); its Idempotency-Key is stored with its "
                           "last part, so a retry gets a whole batch.",
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
            "summary": "Units, newest first",
            "security": [{"bearer": ["operator", "viewer"]}],
            "description": "Roles: operator, viewer.",
            "parameters": [
                {"name": "state", "in": "query", "schema": _UNIT_STATE},
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
            "summary": "One unit with its events",
            "security": [{"bearer": ["operator", "viewer"]}],
            "description": "Roles: operator, viewer.",
            "parameters": [_UCI_PARAM],
            "responses": {"200": _json({"$ref": "#/components/schemas/Unit"}, "The unit"),
                          **_errors(400, 401, 403, 404)}}},
        "/api/v1/units/{uci}/void": {"post": {
            "summary": "Void a unit; its UCI is never reused",
            "security": [{"bearer": ["operator"]}],
            "description": "Role: operator.",
            "parameters": [_UCI_PARAM],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["reason"], "additionalProperties": False,
                "properties": {"reason": {"type": "string", "minLength": 1,
                                          "maxLength": 500}}}}}},
            "responses": {"200": _json({"$ref": "#/components/schemas/Unit"}, "Voided"),
                          **_errors(400, 401, 403, 404, 409, 413, 422, 503)}}},
        "/api/v1/outbox": {"get": {
            "summary": "The upstream backlog: counts by state, oldest pending age, entries",
            "security": [{"bearer": ["operator", "viewer"]}],
            "description": "Roles: operator, viewer. Entries oldest first; `state` defaults "
                           "to pending.",
            "parameters": [
                {"name": "state", "in": "query",
                 "schema": {"type": "string", "enum": list(OUTBOX_STATES)}},
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
                           "agent posts its device section and reads `id` from the reply. "
                           "Fields other than product, hardware_id and mac (name, model, "
                           "product-specific ones) are ignored, whatever their type.",
            "security": [], "x-open-networks": "[ioto] networks",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["product"],
                "properties": {
                    "product": {"type": "string"},
                    "hardware_id": {"type": ["string", "null"]},
                    "mac": {"description": "the hardware id when hardware_id is absent or "
                                           "null (a string then); ignored otherwise"}},
            }}}},
            "responses": {
                "200": _json({"type": "object", "required": ["id"],
                              "properties": {"id": {"type": "string"}}}, "The unit's UCI"),
                **_errors(400, 403, 413, 422, 503)}}},
    },
}


# The operators' status page (factory/web/status_routes.py): viewer or operator token as a bearer
# header or the cookie that /?token= sets; open without one on [status] open_networks.
_STATUS_SECURITY: list[dict[str, list[str]]] = [
    {"bearer": ["operator", "viewer"]}, {"statusCookie": ["operator", "viewer"]}, {}]
_STATUS_OPEN = "[status] open_networks"  # the anonymous `{}` above: only from these
_COUNTS = {"type": "object",
           "properties": {name: {"type": "integer"} for name in COUNTER_NAMES}}
DOCUMENT["components"]["securitySchemes"]["statusCookie"] = {
    "type": "apiKey", "in": "cookie", "name": "factory_status_token",
    "description": "Set by GET /?token=<viewer token> (HttpOnly, SameSite=Strict)."}
DOCUMENT["components"]["schemas"]["Status"] = {
    "type": "object",
    "required": ["station", "now", "shift", "counts", "units_per_hour", "fixtures", "units",
                 "upstream", "printer", "attention"],
    "properties": {
        "station": {"type": "string"},
        "now": {"type": "string", "format": "date-time"},
        "shift": {"type": "object", "properties": {
            "name": {"type": "string", "description": "the running shift's start, HH:MM"},
            "start": {"type": "string", "format": "date-time"}}},
        "day_start": {"type": "string", "format": "date-time"},
        "counts": {"type": "object", "description": "Units per counter, this shift and "
                   "today (since local midnight); a unit counts once per counter",
                   "properties": {"shift": _COUNTS, "today": _COUNTS}},
        "units_per_hour": {"type": "integer", "description": "Units verified in the last "
                           "60 minutes"},
        "fixtures": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "port": {"type": "string"},
            "state": {"type": "string", "enum": list(FIXTURE_STATES)},
            "words": {"type": "string"}, "tone": {"enum": list(TONES)},
            "reason": {"type": "string"}, "action": {"type": "string"},
            "uci": {"type": ["string", "null"]}, "since": {"type": "string"},
            "done": {"type": "integer"}, "failed": {"type": "integer"},
            "scans": {"type": "boolean", "description": "whether it takes label scans"}}}},
        "units": {"type": "array", "description": "The 20 units with the newest events",
                  "items": {"type": "object", "properties": {
                      "uci": {"type": "string"}, "human": {"type": "string"},
                      "product": {"type": "string"}, "state": _UNIT_STATE,
                      "updated_at": {"type": "string"},
                      "steps": {"type": "array", "items": {"type": "object"}}}}},
        "upstream": {"type": "object", "properties": {
            "enabled": {"type": "boolean"}, "pending": {"type": "integer"},
            "failed": {"type": "integer"}, "oldest": {"type": ["string", "null"]},
            "oldest_age_seconds": {"type": ["number", "null"]},
            "last_error": {"type": "string"}, "refused": {"type": "string"}}},
        "printer": {"type": "object", "properties": {
            "enabled": {"type": "boolean"}, "queue": {"type": "string"},
            "state": {"enum": list(PRINTER_STATES)}, "reason": {"type": "string"}}},
        "fleet": {"type": "object", "description": "The fleet center's lag behind this "
                  "station ([fleet] url; null numbers: not reached since start)",
                  "properties": {
                      "enabled": {"type": "boolean"}, "events": {"type": ["integer", "null"]},
                      "seconds": {"type": ["number", "null"]},
                      "center_seq": {"type": ["integer", "null"]},
                      "away": {"type": "string"}, "refused": {"type": "string"}}},
        "attention": {"type": "array", "description": "What needs a person now",
                      "items": {"type": "object", "properties": {
                          "source": {"type": "string"}, "what": {"type": "string"},
                          "action": {"type": "string"}}}},
    },
}
DOCUMENT["paths"].update({
    "/": {"get": {
        "summary": "The status page for line operators (HTML, live updates)",
        "description": "Roles: viewer, operator (bearer header or cookie), or none from "
                       "[status] open_networks. `?token=<token>` checks the token, keeps it "
                       "in an HttpOnly cookie and redirects to / (303).",
        "security": _STATUS_SECURITY, "x-open-networks": _STATUS_OPEN,
        "parameters": [{"name": "token", "in": "query", "required": False,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The page",
                              "content": {"text/html": {"schema": {"type": "string"}}}},
                      "303": {"description": "Token kept in a cookie; go to /"},
                      **_errors(401, 403, 503)}}},
    "/api/v1/status": {"get": {
        "summary": "The line's status: the snapshot the status page shows",
        "description": "Roles: viewer, operator, or none from [status] open_networks.",
        "security": _STATUS_SECURITY, "x-open-networks": _STATUS_OPEN,
        "responses": {"200": _json({"$ref": "#/components/schemas/Status"}, "The snapshot"),
                      **_errors(401, 403, 503)}}},
    "/api/v1/status/events": {"get": {
        "summary": "The status as server-sent events",
        "description": "`event: status` with the snapshot as `data`: at once, after every "
                       "change (coalesced), and at least every 15 s. Roles as /api/v1/status. "
                       "`?view=page` is the status page's own stream: `event: page` with the "
                       "page's changing parts as rendered HTML, by element id.",
        "security": _STATUS_SECURITY, "x-open-networks": _STATUS_OPEN,
        "parameters": [{"name": "view", "in": "query", "required": False,
                        "schema": {"enum": ["page"]}}],
        "responses": {"200": {"description": "An endless event stream",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      **_errors(401, 403, 503)}}},
    "/static/{name}": {"get": {
        "summary": "The status page's CSS and JavaScript", "security": [],
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"enum": ["status.css", "status.js"]}}],
        "responses": {"200": {"description": "The file"}, **_errors(404)}}},
})

# Label scans (factory/web/scans.py): an operator's token as a bearer header, or the status
# page's cookie holding one (a keyboard-wedge scanner types into the page).
DOCUMENT["paths"]["/api/v1/fixtures/{name}/scan"] = {"post": {
    "summary": "A label scan for a fixture (label-first binding, end-of-line label check)",
    "description": "Role: operator (bearer header, or the status page's cookie with a JSON "
                   "body). `code`: the scanned text, a UCI in any form or a claim URL. "
                   "200: the fixture took the scan; `accepted` false with `message` when it "
                   "refused the label (wrong product, already bound, voided, unreadable, not "
                   "the unit's): scan again. 409: the fixture is not waiting for a scan (the "
                   "scan is ignored). 404: no such fixture.",
    "security": [{"bearer": ["operator"]}, {"statusCookie": ["operator"]}],
    "parameters": [{"name": "name", "in": "path", "required": True,
                    "schema": {"type": "string"}}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["code"], "additionalProperties": False,
        "properties": {"code": {"type": "string", "minLength": 1, "maxLength": 512}}}}}},
    "responses": {"200": _json({"type": "object", "required": ["fixture", "accepted",
                                                              "message", "uci", "human"],
                                "properties": {"fixture": {"type": "string"},
                                               "accepted": {"type": "boolean"},
                                               "message": {"type": "string"},
                                               "uci": {"type": ["string", "null"]},
                                               "human": {"type": ["string", "null"]}}},
                               "What the fixture made of the scan"),
                  **_errors(400, 401, 403, 404, 409, 413, 422)}}}


async def handler(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return web.json_response(DOCUMENT)
