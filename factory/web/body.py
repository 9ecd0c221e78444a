"""Reading a JSON request body, with an error that says what is wrong."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from factory.web.problems import BadRequest


async def json_body(request: web.Request) -> Any:
    """The parsed body; a 400 problem for an empty or malformed one (413 past the limit)."""
    raw = await request.read()  # raises 413 past client_max_size
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest("the request body is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}") from exc
