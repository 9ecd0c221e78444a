"""Rows of the PostgreSQL journal turned into records."""

from __future__ import annotations

import json
from typing import Any

from factory.journal.records import Event, Unit

UNIT_COLUMNS = "uci, product, hardware_id, state, station, created_at, updated_at"
EVENT_COLUMNS = "seq, uci, kind, at, station, actor, data, hash"


def unit(row: Any, events: list[Event] | None = None) -> Unit:
    uci, product, hardware_id, state, station, created_at, updated_at = row
    return Unit(uci=uci, product=product, hardware_id=hardware_id, state=state,
                station=station, created_at=created_at, updated_at=updated_at,
                events=events or [])


def event(row: Any) -> Event:
    seq, uci, kind, at, station, actor, data, digest = row
    return Event(seq=int(seq), uci=uci, kind=kind, at=at, station=station, actor=actor,
                 data=json.loads(data), hash=digest, text=data)
