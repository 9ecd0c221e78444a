"""The fleet's center: a PostgreSQL database (schema `fleet`) that receives every station's
events in order, re-checks each station's hash chain as they arrive, and binds hardware
identities across the fleet. All of the center's SQL is here.

A batch is taken whole or refused whole. Events the center holds already (same seq, same
hash) are skipped, so a shipper that crashed after the center committed sends them again
harmlessly. A gap, an event whose hash does not follow the chain (altered), or a seq the
center holds with another hash (the station's chain went backwards: a restored journal) is
refused and the station is flagged with the reason until a person clears it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from factory.journal.chain import GENESIS, canonical_data, event_hash
from factory.journal.postgres.pipelined import in_one_sync
from factory.journal.records import Event
from factory.states import UNIT_STATES

SCHEMA_LOCK = 0x666C6565

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS fleet;
CREATE TABLE IF NOT EXISTS fleet.stations (
    station TEXT PRIMARY KEY,
    head_seq BIGINT NOT NULL DEFAULT 0,
    head_hash TEXT NOT NULL,
    head_at TEXT,                -- the newest received event's own time
    received_at TIMESTAMPTZ,     -- when the center last took a batch
    refused TEXT NOT NULL DEFAULT '',  -- why this station's events are refused, or ''
    refused_at TIMESTAMPTZ,
    -- What the station last said of its own journal (its shipper reports it each round):
    -- the fleet view's lag without asking the station.
    reported_seq BIGINT,         -- its newest event
    reported_oldest TEXT,        -- `at` of its first event the center lacked then
    reported_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS fleet.events (
    station TEXT NOT NULL,
    seq BIGINT NOT NULL,
    uci TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    data TEXT NOT NULL,
    hash TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (station, seq)
);
CREATE INDEX IF NOT EXISTS fleet_events_uci ON fleet.events (uci) WHERE uci <> '';
-- The fleet page counts the day's events by `at`. Events arrive roughly in time order, so a
-- BRIN index (each 128 pages' least and greatest `at`) finds the day's pages for a few KiB and
-- almost nothing per insert; a B-tree costs shipping more (scripts/bench_fleet.py,
-- scripts/bench_fleet_page.py). A center made before it builds it once, in a scan. Pages
-- not yet summarised are always read: autosummarize has autovacuum summarise each range as
-- soon as it is full, rather than at the table's next vacuum.
CREATE INDEX IF NOT EXISTS fleet_events_at ON fleet.events USING brin (at)
    WITH (autosummarize = on);
CREATE TABLE IF NOT EXISTS fleet.units (
    uci TEXT PRIMARY KEY,
    station TEXT NOT NULL,
    product TEXT NOT NULL,
    hardware_id TEXT,
    state TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fleet_units_hardware ON fleet.units (product, hardware_id)
    WHERE hardware_id IS NOT NULL;
-- The fleet view finds a unit by its hardware id alone (a person does not know the product).
CREATE INDEX IF NOT EXISTS fleet_units_hardware_id ON fleet.units (hardware_id)
    WHERE hardware_id IS NOT NULL;
-- A center made before stations reported their heads (ALTER only then: it locks the table).
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'fleet'
                   AND table_name = 'stations' AND column_name = 'reported_seq') THEN
        ALTER TABLE fleet.stations ADD COLUMN reported_seq BIGINT,
            ADD COLUMN reported_oldest TEXT, ADD COLUMN reported_at TIMESTAMPTZ;
    END IF;
END $$;
-- A hardware id bound to two live UCIs (stations that issued offline): flagged, never hidden.
CREATE TABLE IF NOT EXISTS fleet.conflicts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product TEXT NOT NULL,
    hardware_id TEXT NOT NULL,
    uci TEXT NOT NULL,
    station TEXT NOT NULL,
    other_uci TEXT NOT NULL,
    other_station TEXT NOT NULL,
    found_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""


class CenterError(Exception):
    """The center cannot be reached or answered with an error (retry later)."""


@dataclass(frozen=True)
class Receipt:
    """What the center did with a batch: its head for the station afterwards, how many events
    were new, and why it refused them ('' if it did not)."""

    head_seq: int
    accepted: int
    refused: str = ""


@dataclass(frozen=True)
class StationRow:
    station: str
    head_seq: int
    head_at: str | None
    received_at: dt.datetime | None
    refused: str


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    """A connection to the center, its schema made if missing."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10,
                                                     application_name="factory-fleet")
        await conn.execute("SET synchronous_commit = on")
        await conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            await conn.execute(SCHEMA)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
    except psycopg.Error as exc:
        raise CenterError(f"the fleet center does not answer: {str(exc).strip()}") from exc
    return conn


async def head(conn: psycopg.AsyncConnection[Any], station: str) -> tuple[int, str, str]:
    """The center's (seq, hash) of the station's newest event and why it refuses it, if so."""
    rows = await (await conn.execute(
        "SELECT head_seq, head_hash, refused FROM fleet.stations WHERE station = %s",
        (station,))).fetchall()
    return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else (0, GENESIS, "")


async def receive(conn: psycopg.AsyncConnection[Any], station: str,
                  events: Sequence[Event]) -> Receipt:
    """Take the station's next events (in seq order) in one transaction, or refuse them all
    and flag the station with the first problem."""
    # Pipeline mode: the writes and COMMIT go in one round trip after the head's.
    return await in_one_sync(conn, lambda: _receive(conn, station, events))


async def _receive(conn: psycopg.AsyncConnection[Any], station: str,
                   events: Sequence[Event]) -> Receipt:
    # One statement makes the station's row if new, locks it and returns it.
    row = await (await conn.execute(
        "INSERT INTO fleet.stations (station, head_hash) VALUES (%s, %s)"
        " ON CONFLICT (station) DO UPDATE SET station = EXCLUDED.station"
        " RETURNING head_seq, head_hash, refused", (station, GENESIS))).fetchone()
    assert row is not None
    seq, digest, refused = int(row[0]), str(row[1]), str(row[2])
    if refused:
        return Receipt(seq, 0, refused)
    known = {}
    if events and events[0].seq <= seq:
        known = dict(await (await conn.execute(
            "SELECT seq, hash FROM fleet.events WHERE station = %s AND seq BETWEEN %s"
            " AND %s", (station, events[0].seq, seq))).fetchall())
    fresh: list[tuple[Event, str]] = []
    problem = ""
    for event in events:
        text = event.text or canonical_data(event.data)  # what the hash covers
        if event.seq <= seq:
            if known.get(event.seq) != event.hash:
                problem = (f"station {station}'s event {event.seq} differs from the one the "
                           "center received before: its journal went backwards (restored "
                           "or replaced) or was rewritten")
                break
            continue
        if event.seq != seq + 1:
            problem = (f"station {station} sent event {event.seq} after {seq}: events "
                       f"{seq + 1}..{event.seq - 1} are missing (a gap in its chain)")
            break
        if event_hash(digest, event.seq, event.uci, event.kind, event.at, station,
                      event.actor, text) != event.hash or event.station != station:
            problem = (f"station {station}'s event {event.seq} was altered (its content "
                       "does not match its hash and the chain before it)")
            break
        fresh.append((event, text))
        seq, digest = event.seq, event.hash
    if problem:
        # Nothing of the batch was written: only the flag commits.
        await conn.execute("UPDATE fleet.stations SET refused = %s, refused_at = now()"
                           " WHERE station = %s", (problem, station))
        return Receipt(int(row[0]), 0, problem)
    if fresh:
        await _store(conn, station, fresh)
        await conn.execute(
            "UPDATE fleet.stations SET head_seq = %s, head_hash = %s, head_at = %s,"
            " received_at = now() WHERE station = %s",
            (seq, digest, fresh[-1][0].at, station))
    return Receipt(seq, len(fresh))


async def _store(conn: psycopg.AsyncConnection[Any], station: str,
                 fresh: list[tuple[Event, str]]) -> None:
    """Write a checked batch: a handful of statements whatever its size (rows as arrays
    through unnest), the unit rows and their states worked out in Python first."""
    await conn.execute(
        "INSERT INTO fleet.events (station, seq, uci, kind, at, actor, data, hash)"
        " SELECT %s, * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[],"
        " %b::text[], %b::text[], %b::text[])",
        (station, *_columns([(e.seq, e.uci, e.kind, e.at, e.actor, text, e.hash)
                             for e, text in fresh], 7)))
    issued: list[tuple[str, str, str | None, str]] = []
    states: dict[str, tuple[str, str]] = {}  # uci -> its newest state in the batch, and when
    for event, _ in fresh:
        if not event.uci:
            continue
        if event.kind == "issued":
            hardware = event.data.get("hardware_id")
            issued.append((event.uci, str(event.data.get("product", "")),
                           str(hardware) if hardware else None, event.at))
        elif event.kind in UNIT_STATES:  # a kind that names a state moves the unit to it
            states[event.uci] = (event.kind, event.at)
    if bound := [row for row in issued if row[2] is not None]:
        # Only other stations' units: a station's own journal binds a hardware id once (its
        # unique index), and its unit voided earlier in this very batch is not yet so here.
        await conn.execute(
            "INSERT INTO fleet.conflicts (product, hardware_id, uci, station, other_uci,"
            " other_station) SELECT j.p, j.h, j.u, %s, f.uci, f.station"
            " FROM unnest(%b::text[], %b::text[], %b::text[]) AS j(u, p, h)"
            " JOIN fleet.units AS f ON f.product = j.p AND f.hardware_id = j.h"
            " WHERE f.state <> 'voided' AND f.uci <> j.u AND f.station <> %s",
            (station, *_columns([row[:3] for row in bound], 3), station))
    if issued:
        await conn.execute(
            "INSERT INTO fleet.units (uci, station, product, hardware_id, state, issued_at,"
            " updated_at) SELECT j.u, %s, j.p, j.h, 'issued', j.a, j.a"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS j(u, p, h, a)"
            " ON CONFLICT (uci) DO NOTHING", (station, *_columns(issued, 4)))
    if states:
        await conn.execute(
            "UPDATE fleet.units SET state = j.s, updated_at = j.a"
            " FROM unnest(%b::text[], %b::text[], %b::text[]) AS j(u, s, a)"
            " WHERE fleet.units.uci = j.u",
            _columns([(uci, kind, at) for uci, (kind, at) in states.items()], 3))


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for `unnest`."""
    return [[row[i] for row in rows] for i in range(width)]


async def bound(conn: psycopg.AsyncConnection[Any], product: str,
                hardware_id: str) -> tuple[str, str] | None:
    """The fleet's live UCI for this hardware identity and the station that issued it, if
    any station has (the first, should two have: the conflict is flagged apart)."""
    rows = await (await conn.execute(
        "SELECT uci, station FROM fleet.units WHERE product = %s AND hardware_id = %s"
        " AND state <> 'voided' ORDER BY issued_at, uci LIMIT 1",
        (product, hardware_id))).fetchall()
    return (rows[0][0], rows[0][1]) if rows else None


async def report(conn: psycopg.AsyncConnection[Any], station: str, seq: int,
                 oldest: str | None) -> None:
    """The station's newest event and the time of its first one the center lacks (None: it
    lacks none), for the fleet view's lag."""
    await conn.execute(
        "INSERT INTO fleet.stations (station, head_hash, reported_seq, reported_oldest,"
        " reported_at) VALUES (%s, %s, %s, %s, now()) ON CONFLICT (station) DO UPDATE SET"
        " reported_seq = excluded.reported_seq, reported_oldest = excluded.reported_oldest,"
        " reported_at = excluded.reported_at", (station, GENESIS, seq, oldest))


async def stations(conn: psycopg.AsyncConnection[Any]) -> list[StationRow]:
    rows = await (await conn.execute(
        "SELECT station, head_seq, head_at, received_at, refused FROM fleet.stations"
        " ORDER BY station")).fetchall()
    return [StationRow(r[0], int(r[1]), r[2], r[3], r[4]) for r in rows]


async def clear_refusal(conn: psycopg.AsyncConnection[Any], station: str) -> bool:
    """A person looked at why the station was refused and lets it ship again."""
    cur = await conn.execute("UPDATE fleet.stations SET refused = '', refused_at = NULL"
                             " WHERE station = %s AND refused <> ''", (station,))
    return cur.rowcount > 0
