"""What an issue request means: validated from JSON into an IssueRequest (no I/O here)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from factory.config import StationConfig
from factory.hardware import HardwareIdError, normalise
from factory.journal.records import IssueRequest

MAX_BATCH = 10_000
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class InvalidField(ValueError):
    """A request field that is missing, of the wrong type, or out of range."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


def issue_request(body: Any, config: StationConfig, actor: str,
                  idempotency_key: str | None = None) -> tuple[IssueRequest, bool]:
    """Validate a POST /api/v1/ucis body; returns the request and whether it is a batch."""
    fields = _object(body, {"product", "hardware_id", "count"})
    product = _product(fields, config)
    hardware_id = _hardware_id(fields.get("hardware_id"))
    batch = "count" in fields
    count = fields.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool):
        raise InvalidField("count", f"must be an integer, got {_json_type(count)}")
    if not 1 <= count <= MAX_BATCH:
        raise InvalidField("count", f"must be between 1 and {MAX_BATCH}, got {count}")
    if hardware_id is not None and count != 1:
        raise InvalidField("count", "a hardware_id names one unit; leave count out or set it to 1")
    key = _idempotency_key(idempotency_key)
    fingerprint = json.dumps([product, hardware_id, count, batch])
    return IssueRequest(product=product, actor=actor, count=count, hardware_id=hardware_id,
                        idempotency_key=key, fingerprint=fingerprint), batch


def ioto_request(body: Any, config: StationConfig, actor: str) -> IssueRequest:
    """Validate the device section an Ioto agent POSTs in factory serialization mode.

    The agent sends its whole device section; fields we do not use are ignored, as the agent
    may carry product-specific ones. A `hardware_id` (or `mac`) makes the request idempotent.
    """
    if not isinstance(body, Mapping):
        raise InvalidField("(body)", f"must be a JSON object, got {_json_type(body)}")
    product = _product(body, config)
    # A null hardware_id is none; the mac is then the id (a retry must find its UCI again).
    field = "hardware_id" if body.get("hardware_id") is not None else "mac"
    hardware_id = _hardware_id(body.get(field), field)
    spec = config.product(product)
    if hardware_id is None and spec is not None and spec.serialized_by == "agent" \
            and spec.agent_identity == "required":
        raise InvalidField("mac", f"is required: units of {product} are serialized by their "
                                  "agent, and without a mac (or hardware_id) in its device "
                                  "section each boot would get a new UCI and a new label")
    return IssueRequest(product=product, actor=actor, hardware_id=hardware_id,
                        fingerprint=json.dumps([product, hardware_id, 1, False]))


def _object(body: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidField("(body)", f"must be a JSON object, got {_json_type(body)}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidField(unknown[0], f"is not a field of this request (known: "
                                       f"{', '.join(sorted(allowed))})")
    return body


def _product(fields: Mapping[str, Any], config: StationConfig) -> str:
    if "product" not in fields:
        raise InvalidField("product", "is required")
    product = fields["product"]
    if not isinstance(product, str):
        raise InvalidField("product", f"must be a string, got {_json_type(product)}")
    if config.product(product) is None:
        known = ", ".join(p.id for p in config.products) or "none configured"
        raise InvalidField("product", f"{product[:80]!r} is not a product of this station "
                                      f"(known: {known})")
    return product


def _hardware_id(value: Any, field: str = "hardware_id") -> str | None:
    if value is None:
        return None
    try:
        return normalise(value)
    except HardwareIdError as exc:
        raise InvalidField(field, str(exc)) from exc


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.match(value):
        raise InvalidField("Idempotency-Key", "must be 1-255 printable ASCII characters, "
                                              "e.g. a UUID")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
