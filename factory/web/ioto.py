"""POST /ioto/serialize: the Embedthis Ioto agent's factory serialization mode.

The agent carries no token, so the route is open only to the networks the config lists.
"""

from __future__ import annotations

from aiohttp import web

from factory.issuing import ioto_request
from factory.web.auth import from_networks
from factory.web.body import json_body
from factory.web.keys import CONFIG, JOURNAL
from factory.web.problems import Forbidden


async def serialize(request: web.Request) -> web.Response:
    """Answer the agent's device section with `{"id": "<UCI>"}`."""
    config = request.app[CONFIG]
    remote = request.remote or ""
    if not from_networks(request, config.ioto_networks):
        raise Forbidden(f"{remote or 'this client'} is not on a network allowed to serialize; "
                        "add its network to [ioto] networks in the station config")
    body = await json_body(request)
    req = ioto_request(body, config, f"ioto@{remote}")
    result = await request.app[JOURNAL].issue(req)
    return web.json_response({"id": result.ucis[0]})
