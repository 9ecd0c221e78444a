"""The fleet view's reads of the center: each station with its lag and its day, units, one
unit with its events from every station, a search by UCI or hardware id, each station's chain
walked again, every event for export, the hardware conflicts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import psycopg

from factory import clock
from factory import uci as uci_codec
from factory.hardware import HardwareIdError, normalise
from factory.journal.chain import ChainWalk

Conn = psycopg.AsyncConnection[Any]
EVENT_COLUMNS = "station, seq, uci, kind, at, actor, data, hash"
MAX_FOUND = 20  # units one search shows (a hardware id bound twice shows both)


class BadQuery(ValueError):
    """A search that is neither a UCI (in any form) nor a hardware id; says which forms."""


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


# Every station with its units and failures since a time. The day's events are read in one
# pass for all stations: the BRIN index on `at` (center.py) keeps it to the day's pages however
# many events the center holds (scripts/bench_fleet_page.py).
STATIONS_SINCE = (
    "WITH day AS (SELECT station, count(DISTINCT uci) FILTER (WHERE uci <> '') AS units,"
    "  count(*) FILTER (WHERE kind = 'failed') AS failed"
    "  FROM fleet.events WHERE at >= %s GROUP BY station)"
    " SELECT s.station, s.head_seq, s.head_at, s.received_at, s.refused, s.reported_seq,"
    " s.reported_oldest, s.reported_at, coalesce(d.units, 0), coalesce(d.failed, 0)"
    " FROM fleet.stations AS s LEFT JOIN day AS d USING (station) ORDER BY s.station")


async def fleet(conn: Conn, since: str) -> list[dict[str, Any]]:
    """Every station as the center sees it: what it received, the lag the station last
    reported (events, and the oldest one's age in seconds), and since `since` (a journal time:
    the day's start) its units and failures; its open hardware conflicts."""
    rows = await (await conn.execute(STATIONS_SINCE, (since,))).fetchall()
    open_conflicts = [c for c in await conflicts(conn) if c["open"]]
    now = clock.now()
    result = []
    for (station, head_seq, head_at, received, refused, reported, oldest, reported_at,
         units_today, failed_today) in rows:
        events = max(0, int(reported) - int(head_seq)) if reported is not None else None
        seconds = None
        if events is not None:
            seconds = 0.0
            if events and oldest:
                then = datetime.fromisoformat(oldest.replace("Z", "+00:00"))
                seconds = round(max(0.0, (now - then).total_seconds()), 1)
        result.append({
            "station": station, "head_seq": int(head_seq), "head_at": head_at,
            "received_at": received.isoformat() if received else None, "refused": refused,
            "lag_events": events, "lag_seconds": seconds,
            "reported_at": reported_at.isoformat() if reported_at else None,
            "units_today": int(units_today), "failed_today": int(failed_today),
            "conflicts": sum(station in (c["station"], c["other_station"])
                             for c in open_conflicts)})
    return result


async def search(conn: Conn, text: str) -> list[dict[str, Any]]:
    """The units `text` names, each with its events from every station: a UCI in any form
    (a claim URL, dashed or not, lower case) or a hardware id (a MAC in any form, a chip
    serial). BadQuery if it is neither."""
    text = text.strip()
    ucis: list[str] = []
    problems = []
    try:
        ucis.append(uci_codec.find(text))
    except uci_codec.UciError as exc:
        problems.append(f"not a UCI ({exc})")
    try:
        hardware = normalise(text)
    except HardwareIdError as exc:
        problems.append(f"not a hardware id ({exc})")
    else:
        rows = await (await conn.execute(
            "SELECT uci FROM fleet.units WHERE hardware_id = %s ORDER BY issued_at, uci"
            " LIMIT %s", (hardware, MAX_FOUND))).fetchall()
        ucis += [row[0] for row in rows if row[0] not in ucis]
    if len(problems) == 2:
        raise BadQuery(f"{text[:80]!r} is {problems[0]} and {problems[1]}")
    found = [await unit(conn, uci) for uci in ucis]
    return [u for u in found if u is not None]
