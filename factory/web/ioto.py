"""POST /ioto/serialize: the Embedthis Ioto agent's factory serialization mode.

The agent carries no token, so the route is open only to the networks the config lists. It
takes only a 200 with `{"id": …}`: anything else it logs as "Cannot fetch device ID" and asks
again every 2 s, so a repeat of the same unit (the same hardware id) is a 200 with the same UCI.

For a product whose units are serialized by their agent (`serialized_by = "agent"`), the
agent's answer is the unit's serialization: before it is sent, the unit's registration is
queued and its label made (the print queue then owes it), each once a unit and journaled, so
a station stopped in between finishes them when the agent asks again.
"""

from __future__ import annotations

import logging

from aiohttp import web

from factory.config import Product
from factory.issuing import ioto_request
from factory.labels.errors import LabelError
from factory.upstream.requests import registration_for
from factory.web.auth import from_networks
from factory.web.body import json_body
from factory.web.keys import CONFIG, JOURNAL, LABEL_MAKER, LIVE
from factory.web.problems import Forbidden, Problem

log = logging.getLogger("factory.ioto")


class LabelUnavailable(Problem):
    status, title, slug = 503, "Label not made", "label-not-made"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = "2"


async def serialize(request: web.Request) -> web.Response:
    """Answer the agent's device section with `{"id": "<UCI>"}`."""
    config = request.app[CONFIG]
    remote = request.remote or ""
    if not from_networks(request, config.ioto_networks):
        raise Forbidden(f"{remote or 'this client'} is not on a network allowed to serialize; "
                        "add its network to [ioto] networks in the station config")
    body = await json_body(request)
    req = ioto_request(body, config, f"ioto@{remote}")
    product = config.product(req.product)
    assert product is not None  # ioto_request checked it
    if req.hardware_id is None:
        again = "a new UCI" + (" and a new label" if product.serialized_by == "agent" else "")
        log.warning("%s serialized a unit of %s without a mac or hardware_id: each boot of "
                    "its agent gets %s; put the unit's mac in its device section",
                    remote, product.id, again)
        request.app[LIVE].notices.note(
            f"ioto:{product.id}",
            f"Units of {product.name} were serialized by their agent without a mac or "
            f"hardware id (the last from {remote}): each boot of such an agent gets {again}",
            "put each unit's mac in the device section of its config/device.json5")
    result = await request.app[JOURNAL].issue(req)
    uci = result.ucis[0]
    if product.serialized_by == "agent":
        await _serialized(request.app, uci, product, req.actor)
    return web.json_response({"id": uci})


async def _serialized(app: web.Application, uci: str, product: Product, actor: str) -> None:
    """The unit's registration queued and its label made, once each (a repeat finds them)."""
    journal, config = app[JOURNAL], app[CONFIG]
    unit = await journal.unit(uci)
    if unit.last("agent_serialized") is None:
        queued = (registration_for(product, uci, unit.hardware_id, unit.created_at)
                  if config.upstream.enabled else None)
        await journal.record(uci, "agent_serialized", actor,
                             {"hardware_id": unit.hardware_id}, enqueue=queued)
    maker = app.get(LABEL_MAKER)
    if not product.label or maker is None or unit.last("labelled") is not None:
        return
    try:
        await maker.make(uci, product, actor)
    except (LabelError, OSError) as exc:
        log.error("the label of %s (serialized by its agent) could not be made: %s", uci, exc)
        raise LabelUnavailable(f"the unit's label could not be made ({exc}); the agent asks "
                               "again and gets its ID once the label is made: check the "
                               "product's label template and the label folder") from exc
