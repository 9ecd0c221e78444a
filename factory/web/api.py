"""The station API: issue UCIs, read and void units, health."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from factory import failpoints
from factory import uci as uci_codec
from factory.issuing import InvalidField, issue_request
from factory.journal.backlog import backlog
from factory.journal.records import Event, Unit
from factory.states import OUTBOX_STATES, UNIT_STATES
from factory.web.auth import authorize
from factory.web.body import json_body
from factory.web.keys import CONFIG, JOURNAL, TOKENS
from factory.web.problems import BadRequest, Unavailable

MAX_PAGE = 1000
MAX_REASON = 500


async def healthz(request: web.Request) -> web.Response:
    """Liveness and the journal's health (no token: for load balancers and monitoring): 503
    while the journal's newest write failed (e.g. its disk is full)."""
    journal = request.app[JOURNAL]
    await journal.ping()
    if journal.hold:  # alive, but refusing to issue until a person acts
        raise Unavailable(f"the journal is held: {journal.hold}")
    if journal.write_failure:  # alive, but refusing new work until a write succeeds
        raise Unavailable(f"the journal cannot write: {journal.write_failure}; new work is "
                          "refused until it can")
    return web.json_response({"status": "ok", "station": request.app[CONFIG].station_id})


async def issue(request: web.Request) -> web.Response:
    """POST /api/v1/ucis: one UCI (optionally for a hardware id) or a batch of `count`."""
    principal = await authorize(request, request.app[TOKENS], "issue")
    body = await json_body(request)
    req, batch = issue_request(body, request.app[CONFIG], principal.actor,
                               request.headers.get("Idempotency-Key"))
    result = await request.app[JOURNAL].issue(req)
    failpoints.hit("api.issued")
    status = 201 if result.created else 200
    if batch:
        return web.json_response({"product": req.product, "count": len(result.ucis),
                                  "ucis": result.ucis}, status=status)
    uci = result.ucis[0]
    return web.json_response(
        {"uci": uci, "human": uci_codec.human(uci), "product": req.product,
         "hardware_id": req.hardware_id},
        status=status, headers={"Location": f"/api/v1/units/{uci}"})


async def get_unit(request: web.Request) -> web.Response:
    """GET /api/v1/units/{uci}: the unit, its state and its events."""
    await authorize(request, request.app[TOKENS], "read")
    unit = await request.app[JOURNAL].unit(_path_uci(request))
    return web.json_response(unit_json(unit, with_events=True))


async def list_units(request: web.Request) -> web.Response:
    """GET /api/v1/units: newest first, filtered by state and product, paged by cursor."""
    await authorize(request, request.app[TOKENS], "read")
    query = request.query
    unknown = sorted(set(query) - {"state", "product", "limit", "cursor"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}; use state, product, "
                         "limit, cursor")
    state = query.get("state")
    if state is not None and state not in UNIT_STATES:
        raise InvalidField("state", f"must be one of {', '.join(UNIT_STATES)}")
    limit = _int_param(query.get("limit"), "limit", 100, 1, MAX_PAGE)
    cursor = _int_param(query.get("cursor"), "cursor", None, 1, 2**63 - 1)
    units, next_cursor = await request.app[JOURNAL].units(
        state=state, product=query.get("product"), limit=limit, before=cursor)
    return web.json_response({
        "units": [unit_json(u) for u in units],
        "next_cursor": None if next_cursor is None else str(next_cursor),
    })


async def outbox(request: web.Request) -> web.Response:
    """GET /api/v1/outbox: the upstream backlog (counts, oldest age) and its entries."""
    await authorize(request, request.app[TOKENS], "read")
    query = request.query
    unknown = sorted(set(query) - {"state", "uci", "limit"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}; use state, uci, limit")
    state = query.get("state", "pending")
    if state not in OUTBOX_STATES:
        raise InvalidField("state", f"must be one of {', '.join(OUTBOX_STATES)}")
    uci = None
    if "uci" in query:
        try:
            uci = uci_codec.parse(query["uci"])
        except uci_codec.UciError as exc:
            raise InvalidField("uci", f"is not a UCI: {exc}") from exc
    limit = _int_param(query.get("limit"), "limit", 100, 1, MAX_PAGE)
    return web.json_response(await backlog(request.app[JOURNAL], state=state, uci=uci,
                                           limit=limit))


async def void_unit(request: web.Request) -> web.Response:
    """POST /api/v1/units/{uci}/void: take a UCI out of use for good, with a reason."""
    principal = await authorize(request, request.app[TOKENS], "void")
    uci = _path_uci(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidField("(body)", "must be a JSON object with a 'reason'")
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        raise InvalidField(unknown[0], "is not a field of this request (known: reason)")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidField("reason", "is required: say why the unit is voided")
    if len(reason) > MAX_REASON:
        raise InvalidField("reason", f"must be at most {MAX_REASON} characters")
    journal = request.app[JOURNAL]
    await journal.void(uci, reason.strip(), principal.actor)
    return web.json_response(unit_json(await journal.unit(uci), with_events=True))


def _path_uci(request: web.Request) -> str:
    try:
        return uci_codec.parse(request.match_info["uci"])
    except uci_codec.UciError as exc:
        raise BadRequest(f"not a UCI: {exc}") from exc


def _int_param(text: str | None, name: str, default: int | None, low: int,
               high: int) -> Any:
    if text is None:
        return default
    # ASCII digits only, and few: str.isdigit() takes '²' (which int() refuses) and int()
    # refuses more than 4300 digits; either was a 500.
    if not (text.isascii() and text.isdigit() and len(text) <= 19) \
            or not low <= int(text) <= high:
        raise InvalidField(name, f"must be an integer from {low} to {high}, got {text[:40]!r}")
    return int(text)


def unit_json(unit: Unit, *, with_events: bool = False) -> dict[str, Any]:
    """A unit as the API shows it."""
    out: dict[str, Any] = {
        "uci": unit.uci, "human": uci_codec.human(unit.uci), "product": unit.product,
        "hardware_id": unit.hardware_id, "state": unit.state, "station": unit.station,
        "created_at": unit.created_at, "updated_at": unit.updated_at,
    }
    if with_events:
        out["events"] = [event_json(e) for e in unit.events]
    return out


def event_json(event: Event) -> dict[str, Any]:
    return {"seq": event.seq, "kind": event.kind, "at": event.at, "station": event.station,
            "actor": event.actor, "data": event.data, "hash": event.hash}
