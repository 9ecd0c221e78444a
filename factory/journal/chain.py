"""The journal's hash chain: each event's hash covers the previous hash and the event itself."""

from __future__ import annotations

import hashlib
import json
from typing import Any

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
