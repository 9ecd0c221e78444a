"""`factory issue`, `units`, `unit` and `void`: the journal's units, without a server."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from factory import uci as uci_codec
from factory.cli.common import CliError, Subcommands, actor, command, with_journal
from factory.config import StationConfig
from factory.journal.interface import Journal
from factory.journal.records import Unit


def register(sub: Subcommands) -> None:
    p = command(sub, "issue", cmd_issue,
                "Issue UCIs straight into the journal (no server needed).")
    p.add_argument("--product", required=True, help="product id from the config")
    p.add_argument("--count", type=int, help="issue a batch of N new UCIs")
    p.add_argument("--hardware-id", help="MAC or chip serial: the same one gets the same UCI")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command(sub, "units", cmd_units, "List units, newest first.")
    p.add_argument("--state", help="only units in this state (issued, voided, ...)")
    p.add_argument("--product", help="only this product")
    p.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command(sub, "unit", cmd_unit, "Show one unit and every event of it.")
    p.add_argument("uci", help="UCI in any form (7KQ2-M9XD-3FHT-0W5R-W, lower case, ...)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command(sub, "void", cmd_void, "Void a unit: its UCI is never used again.")
    p.add_argument("uci", help="UCI in any form")
    p.add_argument("--reason", required=True, help="why (kept in the journal)")


def cmd_issue(args: argparse.Namespace) -> int:
    from factory.issuing import issue_request

    async def work(journal: Journal, config: StationConfig) -> int:
        body: dict[str, Any] = {"product": args.product}
        if args.hardware_id is not None:
            body["hardware_id"] = args.hardware_id
        if args.count is not None:
            body["count"] = args.count
        req, _ = issue_request(body, config, actor())
        result = await journal.issue(req)
        if args.json:
            print(json.dumps({"product": req.product, "hardware_id": req.hardware_id,
                              "created": result.created, "ucis": result.ucis}))
        else:
            note = "new" if result.created else "already issued to this hardware id"
            for uci in result.ucis:
                print(f"{uci_codec.human(uci)}  {uci}  ({note})")
        return 0

    return with_journal(args, work, create=True)


def cmd_units(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        units, cursor = await journal.units(state=args.state, product=args.product,
                                            limit=args.limit)
        if args.json:
            print(json.dumps([_unit_dict(u) for u in units]))
        else:
            for unit in units:
                _print_unit(unit)
            if cursor is not None:
                print(f"(more: raise --limit; {len(units)} shown)")
        return 0

    return with_journal(args, work)


def cmd_unit(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        unit = await journal.unit(uci_codec.parse(args.uci))
        if args.json:
            print(json.dumps(_unit_dict(unit)))
            return 0
        _print_unit(unit)
        for e in unit.events:
            print(f"  #{e.seq:<8} {e.at}  {e.kind:<10} {e.actor}  {json.dumps(e.data)}")
        return 0

    return with_journal(args, work)


def cmd_void(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        if not args.reason.strip():
            raise CliError("--reason must say why the unit is voided")
        uci = uci_codec.parse(args.uci)
        await journal.void(uci, args.reason.strip(), actor())
        print(f"voided {uci_codec.human(uci)}; this UCI will never be issued again")
        return 0

    return with_journal(args, work)


def _print_unit(unit: Unit, out: TextIO = sys.stdout) -> None:
    print(f"{unit.uci}  {uci_codec.human(unit.uci)}  {unit.state:<9}  {unit.product}  "
          f"{unit.hardware_id or '-'}  {unit.created_at}", file=out)


def _unit_dict(unit: Unit) -> dict[str, Any]:
    out = {k: getattr(unit, k) for k in ("uci", "product", "hardware_id", "state", "station",
                                         "created_at", "updated_at")}
    out["human"] = uci_codec.human(unit.uci)
    out["events"] = [{"seq": e.seq, "kind": e.kind, "at": e.at, "actor": e.actor,
                      "data": e.data} for e in unit.events]
    return out
