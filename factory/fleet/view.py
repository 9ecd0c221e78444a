"""The fleet view's reads of the center: units, one unit with its events from every station,
each station's chain walked again, every event for export, the hardware conflicts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from factory.journal.chain import ChainWalk

Conn = psycopg.AsyncConnection[Any]
EVENT_COLUMNS = "station, seq, uci, kind, at, actor, data, hash"


def event_json(row: Any) -> dict[str, Any]:
    station, seq, uci, kind, at, actor, data, digest = row
    return {"station": station, "seq": int(seq), "uci": uci, "kind": kind, "at": at,
            "actor": actor, "data": json.loads(data), "hash": digest}


async def units(conn: Conn, *, station: str | None = None, state: str | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
    rows = await (await conn.execute(
        "SELECT uci, station, product, hardware_id, state, issued_at, updated_at"
        " FROM fleet.units WHERE (%s::text IS NULL OR station = %s)"
        " AND (%s::text IS NULL OR state = %s) ORDER BY issued_at DESC, uci LIMIT %s",
        (station, station, state, state, limit))).fetchall()
    keys = ("uci", "station", "product", "hardware_id", "state", "issued_at", "updated_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


async def unit(conn: Conn, uci: str) -> dict[str, Any] | None:
    found = await (await conn.execute(
        "SELECT uci, station, product, hardware_id, state, issued_at, updated_at"
        " FROM fleet.units WHERE uci = %s", (uci,))).fetchall()
    if not found:
        return None
    rows = await (await conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM fleet.events WHERE uci = %s ORDER BY at, station, seq",
        (uci,))).fetchall()
    keys = ("uci", "station", "product", "hardware_id", "state", "issued_at", "updated_at")
    return {**dict(zip(keys, found[0], strict=True)),
            "events": [event_json(row) for row in rows]}


async def conflicts(conn: Conn) -> list[dict[str, Any]]:
    """Hardware ids bound to two UCIs (stations that issued offline); `open` until a person
    voids one of the two (the void ships like any event)."""
    rows = await (await conn.execute(
        "SELECT c.product, c.hardware_id, c.uci, c.station, c.other_uci, c.other_station,"
        " c.found_at, coalesce(a.state, '') <> 'voided' AND coalesce(b.state, '') <> 'voided'"
        " FROM fleet.conflicts AS c LEFT JOIN fleet.units AS a ON a.uci = c.uci"
        " LEFT JOIN fleet.units AS b ON b.uci = c.other_uci ORDER BY c.id")).fetchall()
    keys = ("product", "hardware_id", "uci", "station", "other_uci", "other_station",
            "found_at", "open")
    return [{**dict(zip(keys, row, strict=True)), "found_at": row[6].isoformat()}
            for row in rows]


async def events(conn: Conn, page: int = 5000) -> AsyncIterator[Any]:
    """Every event the center holds, station by station in seq order, read in pages."""
    last: tuple[str, int] = ("", 0)
    while True:
        rows = await (await conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM fleet.events WHERE (station, seq) > (%s, %s)"
            " ORDER BY station, seq LIMIT %s", (*last, page))).fetchall()
        if not rows:
            return
        for row in rows:
            yield row
        last = (rows[-1][0], int(rows[-1][1]))


async def verify(conn: Conn) -> dict[str, str]:
    """Each station's chain as the center holds it walked again: station -> '' (intact) or
    the first problem."""
    walks: dict[str, ChainWalk] = {}
    async for station, seq, uci, kind, at, actor, data, digest in events(conn):
        walks.setdefault(station, ChainWalk()).step(seq, uci, kind, at, station, actor, data,
                                                    digest)
    result = {station: walk.problem.reason if walk.problem else ""
              for station, walk in walks.items()}
    return result
