"""`factory fleet …`: ship this station's journal to the fleet center, and the fleet view
(status, units, one unit, verify, export) read from the center ([fleet] url, or --url)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from factory import uci as uci_codec
from factory.cli.common import (
    CliError,
    Subcommands,
    command,
    group,
    station_config,
    with_journal,
)
from factory.config import StationConfig, parse_listen
from factory.fleet import center, view
from factory.fleet.shipper import PAGE, Shipper, lag
from factory.journal.interface import Journal

Conn = psycopg.AsyncConnection[Any]


def register(sub: Subcommands) -> None:
    actions = group(sub, "fleet", "The fleet center: shipping and the fleet view.")
    status = command(actions, "status", cmd_status,
                     "Each station's head at the center, refusals, hardware conflicts, and "
                     "this station's lag (events and seconds not shipped yet).")
    units = command(actions, "units", cmd_units, "Units of the whole fleet, newest first.")
    units.add_argument("--station")
    units.add_argument("--state")
    units.add_argument("--limit", type=int, default=50)
    unit = command(actions, "unit", cmd_unit, "One unit and its events from every station.")
    unit.add_argument("uci", help="UCI in any form")
    verify = command(actions, "verify", cmd_verify,
                     "Walk every station's chain the center holds.")
    export = command(actions, "export", cmd_export, "Every event the center holds.")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    ship = command(actions, "ship", cmd_ship,
                   "Ship this station's journal to the center until caught up (the station "
                   "does this itself while it serves).")
    ship.add_argument("--page", type=int, default=PAGE, help="events per transaction")
    clear = command(actions, "clear", cmd_clear,
                    "Let a refused station ship again, after a person looked at why.")
    clear.add_argument("station")
    serve = command(actions, "serve", cmd_serve,
                    "Serve the fleet page: every station's lag, day and conflicts, and a "
                    "unit found by UCI or hardware id (tokens: this station's journal).")
    serve.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT")
    for parser in (status, units, unit, verify, export, ship, clear, serve):
        parser.add_argument("--url", help="the center (default: [fleet] url of the config)")
    for parser in (unit, units, status):
        parser.add_argument("--json", action="store_true", help="print JSON")


def _url(args: argparse.Namespace, config: StationConfig | None = None) -> str:
    url = getattr(args, "url", None) or (config or station_config(args)).fleet_url
    if not url:
        raise CliError("no fleet center: set [fleet] url in the station config or pass --url")
    return str(url)


def _on_center(args: argparse.Namespace, work: Callable[[Conn], Awaitable[int]]) -> int:
    async def run() -> int:
        try:
            conn = await center.connect(_url(args))
        except center.CenterError as exc:
            raise CliError(str(exc)) from exc
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def cmd_status(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        try:
            conn = await center.connect(_url(args, config))
        except center.CenterError as exc:
            raise CliError(str(exc)) from exc
        try:
            mine = await lag(journal, conn, config.station_id)
            stations = await center.stations(conn)
            conflicts = await view.conflicts(conn)
        finally:
            await conn.close()
        if args.json:
            print(json.dumps({
                "station": config.station_id,
                "lag": {"events": mine.events, "seconds": mine.seconds,
                        "center_seq": mine.center_seq, "refused": mine.problem},
                "stations": [{"station": s.station, "head_seq": s.head_seq,
                              "head_at": s.head_at, "refused": s.refused,
                              "received_at": s.received_at.isoformat() if s.received_at
                              else None} for s in stations],
                "conflicts": conflicts}, indent=2))
            return 0
        behind = f", oldest {mine.seconds:.0f} s old" if mine.seconds is not None else ""
        print(f"this station ({config.station_id}): {mine.events} events not shipped{behind}"
              f" (center has up to event {mine.center_seq})")
        for s in stations:
            flag = f"  REFUSED: {s.refused}" if s.refused else ""
            print(f"  {s.station:<20} event {s.head_seq:<8} newest {s.head_at or '-'}{flag}")
        open_conflicts = [c for c in conflicts if c["open"]]
        for c in open_conflicts:
            print(f"  CONFLICT: hardware {c['hardware_id']} ({c['product']}) has "
                  f"{c['uci']} at {c['station']} and {c['other_uci']} at {c['other_station']};"
                  " void one at its station (factory void UCI --reason ...)")
        return 1 if open_conflicts or any(s.refused for s in stations) else 0

    return with_journal(args, work)


def cmd_units(args: argparse.Namespace) -> int:
    async def work(conn: Conn) -> int:
        rows = await view.units(conn, station=args.station, state=args.state,
                                limit=args.limit)
        if args.json:
            print(json.dumps(rows, indent=2))
        for row in [] if args.json else rows:
            print(f"{uci_codec.human(row['uci'])}  {row['station']:<16} {row['state']:<10} "
                  f"{row['hardware_id'] or '-'}")
        return 0

    return _on_center(args, work)


def cmd_unit(args: argparse.Namespace) -> int:
    async def work(conn: Conn) -> int:
        found = await view.unit(conn, uci_codec.parse(args.uci))
        if found is None:
            raise CliError(f"no unit {args.uci} at the fleet center")
        if args.json:
            print(json.dumps(found, indent=2))
            return 0
        print(f"{uci_codec.human(found['uci'])}  {found['state']}  issued at "
              f"{found['station']}  hardware {found['hardware_id'] or '-'}")
        for e in found["events"]:
            print(f"  {e['at']}  {e['station']}#{e['seq']}  {e['kind']}  {e['actor']}")
        return 0

    return _on_center(args, work)


def cmd_verify(args: argparse.Namespace) -> int:
    async def work(conn: Conn) -> int:
        result = await view.verify(conn)
        refused = {s.station: s.refused for s in await center.stations(conn) if s.refused}
        bad = 0
        for station in sorted({*result, *refused}):
            problem = result.get(station, "") or refused.get(station, "")
            bad += bool(problem)
            print(f"{station}: {'NOT OK: ' + problem if problem else 'OK, chain intact'}")
        return 1 if bad else 0

    return _on_center(args, work)


def cmd_export(args: argparse.Namespace) -> int:
    async def work(conn: Conn) -> int:
        fields = ["station", "seq", "uci", "kind", "at", "actor", "data", "hash"]
        writer = csv.DictWriter(sys.stdout, fields) if args.format == "csv" else None
        if writer is not None:
            writer.writeheader()
        async for row in view.events(conn):
            event = view.event_json(row)
            if writer is not None:
                writer.writerow({**event, "data": json.dumps(event["data"], sort_keys=True)})
            else:
                print(json.dumps(event, sort_keys=True))
        return 0

    return _on_center(args, work)


def cmd_ship(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        shipper = Shipper(journal, config.station_id, _url(args, config), page=args.page)
        try:
            await shipper.report()
            total = await shipper.ship_all()
            await shipper.report()  # caught up: the fleet view says so
        except center.CenterError as exc:
            raise CliError(str(exc)) from exc
        finally:
            await shipper.close()
        if shipper.problem:
            print(f"fleet: the center refuses {config.station_id}: {shipper.problem}")
            return 1
        print(f"fleet: shipped {total} events, caught up")
        return 0

    return with_journal(args, work)


def cmd_clear(args: argparse.Namespace) -> int:
    async def work(conn: Conn) -> int:
        if not await center.clear_refusal(conn, args.station):
            print(f"{args.station}: not refused")
            return 0
        print(f"{args.station}: may ship again")
        return 0

    return _on_center(args, work)


def cmd_serve(args: argparse.Namespace) -> int:
    from factory.web.fleet_app import serve_fleet  # aiohttp only when serving

    config = station_config(args)
    host, port = parse_listen("--listen", args.listen)
    try:
        asyncio.run(serve_fleet(config, _url(args, config), host, port))
    except OSError as exc:
        raise CliError(f"cannot serve the fleet page on {args.listen}: "
                       f"{exc.strerror or exc}") from exc
    return 0
