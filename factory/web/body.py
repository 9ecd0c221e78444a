"""Reading a JSON request body, with an error that says what is wrong."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from factory.web.problems import BadRequest, RequestTimeout

# Seconds a client gets to send a body once its head is in (the app sets it from the config);
# a stalled upload would otherwise hold its connection and handler for good.
BODY_TIMEOUT = web.AppKey("body_timeout", float)
DEFAULT_BODY_TIMEOUT = 15.0


async def json_body(request: web.Request) -> Any:
    """The parsed body; a 400 problem for an empty or malformed one, 413 past the limit
    (before reading a byte when Content-Length says so), 408 when it is too slow to come."""
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit,
                                            actual_size=request.content_length)
    seconds = request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT)
    try:
        async with asyncio.timeout(seconds):
            raw = await request.read()  # raises 413 past client_max_size
    except TimeoutError as exc:
        raise RequestTimeout(f"the request body did not arrive within {seconds:g} s; send "
                             "it at once") from exc
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest("the request body is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}") from exc
    except RecursionError as exc:
        raise BadRequest("the request body is nested too deep to read; send a flat JSON "
                         "object") from exc
    except ValueError as exc:  # valid JSON Python will not hold, e.g. a 5,000-digit integer
        raise BadRequest(f"the request body cannot be read: {exc}") from exc
