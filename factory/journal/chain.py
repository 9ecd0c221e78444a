"""The journal's hash chain: each event's hash covers the previous hash and the event itself."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from factory.journal.errors import InvalidData
from factory.journal.records import VerifyResult

GENESIS = "0" * 64


def canonical_data(data: dict[str, Any]) -> str:
    """Event data as the one JSON text that is stored and hashed."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(prev_hash: str, seq: int, uci: str, kind: str, at: str, station: str,
               actor: str, data: str) -> str:
    """SHA-256 over the previous hash and the event's columns.

    NUL separates the columns: none of them can hold one (data is JSON, which escapes it).
    """
    text = "\x00".join((prev_hash, str(seq), uci, kind, at, station, actor, data))
    return hashlib.sha256(text.encode()).hexdigest()


def check_text(field: str, value: Any) -> None:
    """Refuse text the chain cannot hash, naming the field: a lone surrogate, which JSON can
    carry as an escape (`"\\udc80"`) but UTF-8 cannot encode. Walks dicts and lists."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            raise InvalidData(field, f"contains a lone surrogate (\\u{ord(bad):04x}); "
                                     "send valid Unicode") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            # The name is shown in the refusal: a bad key is shown escaped.
            name = str(key).encode(errors="backslashreplace").decode()
            name = f"{field}.{name}" if field else name
            check_text(name, key)
            check_text(name, item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_text(f"{field}[{i}]", item)


def checked_data(field: str, data: dict[str, Any]) -> str:
    """`data` as canonical JSON, refused (InvalidData) if it is not JSON or not hashable text:
    done when a request is made, so a bad one fails alone, before it joins a batch."""
    try:
        text = canonical_data(data)
    except (TypeError, ValueError) as exc:
        raise InvalidData(field or "data", f"is not JSON data: {exc}") from None
    try:
        text.encode()
    except UnicodeEncodeError:
        check_text(field, data)  # names the field
        raise InvalidData(field or "data", "is not valid Unicode") from None
    return text


def checked_issue(request: Any) -> str:
    """An issue request's text checked (InvalidData naming the field) and its `issued` events'
    data as canonical JSON: every backend checks a request when it is made."""
    for name in ("product", "actor", "hardware_id", "idempotency_key", "uci", "bound_at"):
        check_text(name, getattr(request, name))
    data: dict[str, Any] = {"product": request.product}
    if request.hardware_id:
        data["hardware_id"] = request.hardware_id
    if request.uci:
        if not request.hardware_id or request.count != 1:
            raise InvalidData("uci", "a UCI is bound only to one unit's hardware id")
        data["bound_at"] = request.bound_at  # journaled so: issued at that station first
    if request.idempotency_key is not None:
        data["idempotency_key"] = request.idempotency_key
    return checked_data("", data)


def checked_step(uci: str, kind: str, actor: str, data: dict[str, Any], state: str | None,
                 enqueue: Any = None) -> tuple[str, str]:
    """A step's text checked (InvalidData naming the field): its data and its outbox
    request's JSON, canonical ("" without one)."""
    for name, value in (("uci", uci), ("kind", kind), ("actor", actor), ("state", state)):
        check_text(name, value)
    text = checked_data("", data)
    outbox_text = ""
    if enqueue is not None:
        check_text("enqueue", (enqueue.action, enqueue.key))
        outbox_text = checked_data("enqueue", enqueue.to_json())
    return text, outbox_text


class ChainWalk:
    """Walks one station's chain event by event, in seq order, and names the first event that
    was altered or removed: the one check behind every `verify` (each backend, the center)."""

    def __init__(self) -> None:
        self.prev, self.expected, self.checked = GENESIS, 1, 0
        self.problem: VerifyResult | None = None

    def step(self, seq: int, uci: str, kind: str, at: str, station: str, actor: str,
             data: str, stored: str) -> bool:
        """Take the next event; False (and `problem` set) at the first bad one."""
        if self.problem is not None:
            return False
        if seq != self.expected:
            self.problem = VerifyResult(False, self.checked, self.expected,
                                        f"event {self.expected} is missing (removed)")
        elif event_hash(self.prev, seq, uci, kind, at, station, actor, data) != stored:
            self.problem = VerifyResult(False, self.checked, seq,
                                        f"event {seq} was altered (its content does not match "
                                        "its hash and the chain before it)")
        else:
            self.prev, self.expected, self.checked = stored, seq + 1, self.checked + 1
        return self.problem is None

    def result(self, newest: int) -> VerifyResult:
        """The walk's verdict; `newest` is the highest seq the journal remembers elsewhere (the
        units table): removing the newest events leaves no gap in the chain itself."""
        if self.problem is not None:
            return self.problem
        if newest >= self.expected:
            return VerifyResult(False, self.checked, self.expected,
                                f"events {self.expected}..{newest} are missing (removed)")
        return VerifyResult(True, self.checked)

