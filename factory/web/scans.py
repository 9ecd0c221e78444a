"""POST /api/v1/fixtures/{name}/scan: a label scan for a fixture, from a line tool (bearer
operator token) or from the status page's scan field, where a keyboard-wedge scanner types
(the page's cookie, holding an operator token). The fixture's answer is the response."""

from __future__ import annotations

from aiohttp import web

from factory import uci as uci_codec
from factory.units.scans import MAX_CODE, ScanIgnored, ScanSource
from factory.web.auth import PERMISSIONS, authorize
from factory.web.body import json_body
from factory.web.keys import SCAN_DESK, TOKENS
from factory.web.problems import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from factory.web.status_routes import COOKIE

SOURCES: tuple[ScanSource, ...] = ("api", "page")


async def _authorize(request: web.Request) -> ScanSource:
    """A bearer operator token ("api"), or the status page's cookie holding one ("page")."""
    token = request.cookies.get(COOKIE)
    if "Authorization" in request.headers or not token:
        await authorize(request, request.app[TOKENS], "scan")
        return "api"
    principal = await request.app[TOKENS].lookup(token)
    if principal is None:
        raise Unauthorized("the token this screen saved is unknown or revoked: open "
                           "/?token=<token> with a current operator token")
    if principal.role not in PERMISSIONS["scan"]:
        raise Forbidden(f"this screen's {principal.role} token may not scan labels: open "
                        "/?token=<token> with an operator token on a screen that scans")
    # A cross-site form cannot send JSON without a preflight we never answer (besides the
    # cookie being SameSite=Strict): the page's script always does.
    if request.content_type != "application/json":
        raise Forbidden("a scan from the page must be sent as application/json")
    return "page"


async def scan(request: web.Request) -> web.Response:
    """The fixture takes the scan (200, accepted or refused with what to do), or it was not
    waiting for one (409) or does not exist (404)."""
    source = await _authorize(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise Unprocessable("(body): must be a JSON object with a 'code'", field="(body)")
    unknown = sorted(set(body) - {"code"})
    if unknown:
        raise Unprocessable(f"{unknown[0]}: is not a field of this request (known: code)",
                            field=unknown[0])
    code = body.get("code")
    if not isinstance(code, str) or not code.strip() or len(code) > MAX_CODE:
        raise Unprocessable(f"code: must be the scanned text (1 to {MAX_CODE} characters)",
                            field="code")
    name = request.match_info["name"]
    try:
        answer = await request.app[SCAN_DESK].scan(name, code, source)
    except ScanIgnored as exc:
        raise (NotFound if exc.unknown else Conflict)(exc.message) from None
    return web.json_response({
        "fixture": name, "accepted": answer.accepted, "message": answer.message,
        "uci": answer.uci, "human": uci_codec.human(answer.uci) if answer.uci else None})
