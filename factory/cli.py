"""`factory`: the command line for operators and engineers."""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import datetime
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from factory import uci as uci_codec
from factory.config import ConfigError, StationConfig, load, parse_listen
from factory.issuing import InvalidField
from factory.journal.errors import JournalError
from factory.journal.records import ROLES, Unit
from factory.journal.sqlite import Journal
from factory.labels.errors import LabelError
from factory.tokens import new_token, token_hash, valid_name

EXPORT_FIELDS = ("seq", "uci", "kind", "at", "station", "actor", "data", "hash")


class CliError(Exception):
    """Something the user can fix; printed without a traceback, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `factory` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result: int = args.func(args)
        return result
    except (CliError, ConfigError, InvalidField, JournalError, LabelError,
            uci_codec.UciError) as exc:
        print(f"factory: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _config(args: argparse.Namespace) -> StationConfig:
    path = args.config or os.environ.get("FACTORY_CONFIG")
    if not path:
        raise CliError("no station config: pass --config FILE or set FACTORY_CONFIG")
    return load(path)


def _with_journal(args: argparse.Namespace,
                  work: Callable[[Journal, StationConfig], Awaitable[int]]) -> int:
    config = _config(args)

    async def run() -> int:
        journal = await Journal.open(config.journal, config.station_id)
        try:
            return await work(journal, config)
        finally:
            await journal.close()

    return asyncio.run(run())


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


# -- commands -------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from factory.station import serve  # aiohttp only when serving

    config = _config(args)
    if args.listen:
        host, port = parse_listen("--listen", args.listen)
        config = dataclasses.replace(config, host=host, port=port)
    asyncio.run(serve(config, access_log=not args.no_access_log))
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    from factory.issuing import issue_request

    async def work(journal: Journal, config: StationConfig) -> int:
        body: dict[str, Any] = {"product": args.product}
        if args.hardware_id is not None:
            body["hardware_id"] = args.hardware_id
        if args.count is not None:
            body["count"] = args.count
        req, _ = issue_request(body, config, _actor())
        result = await journal.issue(req)
        if args.json:
            print(json.dumps({"product": req.product, "hardware_id": req.hardware_id,
                              "created": result.created, "ucis": result.ucis}))
        else:
            note = "new" if result.created else "already issued to this hardware id"
            for uci in result.ucis:
                print(f"{uci_codec.human(uci)}  {uci}  ({note})")
        return 0

    return _with_journal(args, work)


def _print_unit(unit: Unit, out: TextIO = sys.stdout) -> None:
    print(f"{unit.uci}  {uci_codec.human(unit.uci)}  {unit.state:<9}  {unit.product}  "
          f"{unit.hardware_id or '-'}  {unit.created_at}", file=out)


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

    return _with_journal(args, work)


def _unit_dict(unit: Unit) -> dict[str, Any]:
    out = {k: getattr(unit, k) for k in ("uci", "product", "hardware_id", "state", "station",
                                         "created_at", "updated_at")}
    out["human"] = uci_codec.human(unit.uci)
    out["events"] = [{"seq": e.seq, "kind": e.kind, "at": e.at, "actor": e.actor,
                      "data": e.data} for e in unit.events]
    return out


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

    return _with_journal(args, work)


def cmd_void(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        if not args.reason.strip():
            raise CliError("--reason must say why the unit is voided")
        uci = uci_codec.parse(args.uci)
        await journal.void(uci, args.reason.strip(), _actor())
        print(f"voided {uci_codec.human(uci)}; this UCI will never be issued again")
        return 0

    return _with_journal(args, work)


def cmd_token_new(args: argparse.Namespace) -> int:
    if not valid_name(args.name):
        raise CliError("a token name is 1-64 letters, digits and . _ @ -")

    async def work(journal: Journal, config: StationConfig) -> int:
        token = new_token()
        await journal.add_token(args.name, args.role, token_hash(token))
        print(token)
        print(f"(token {args.name!r}, role {args.role}: shown only this once, keep it safe)",
              file=sys.stderr)
        return 0

    return _with_journal(args, work)


def cmd_token_list(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        for t in await journal.tokens():
            status = f"revoked {t.revoked_at}" if t.revoked_at else "active"
            print(f"{t.name:<24} {t.role:<9} created {t.created_at}  {status}")
        return 0

    return _with_journal(args, work)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        await journal.revoke_token(args.name)
        print(f"revoked {args.name!r}; a running station refuses it within seconds")
        return 0

    return _with_journal(args, work)


def cmd_journal_verify(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        result = await journal.verify()
        if result.ok:
            print(f"journal {config.journal}: OK, {result.checked} events, chain intact")
            return 0
        print(f"journal {config.journal}: TAMPERED at event {result.bad_seq}: {result.reason} "
              f"({result.checked} events before it are intact)")
        return 1

    return _with_journal(args, work)


def cmd_journal_export(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    if args.output:
        # Audit exports hold the whole journal: private like the journal itself.
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        out = open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115

    async def work(journal: Journal, config: StationConfig) -> int:
        writer = csv.writer(out) if args.format == "csv" else None
        if writer:
            writer.writerow(EXPORT_FIELDS)
        async for e in journal.events():
            row: dict[str, Any] = {"seq": e.seq, "uci": e.uci, "kind": e.kind, "at": e.at,
                                   "station": e.station, "actor": e.actor, "data": e.data,
                                   "hash": e.hash}
            if writer:
                row["data"] = json.dumps(e.data, sort_keys=True)
                writer.writerow([row[f] for f in EXPORT_FIELDS])
            else:
                out.write(json.dumps(row) + "\n")
        return 0

    try:
        return _with_journal(args, work)
    finally:
        if out is not sys.stdout:
            out.close()


def cmd_provision(args: argparse.Namespace) -> int:
    from factory.config import DRIVERS, Fixture
    from factory.units.errors import UnitError
    from factory.units.fixture import make_driver
    from factory.units.pipeline import Pipeline, UnitRun
    from factory.units.port import open_port

    if args.driver not in DRIVERS:
        raise CliError(f"--driver must be one of {', '.join(DRIVERS)}")

    async def work(journal: Journal, config: StationConfig) -> int:
        product = config.product(args.product)
        if product is None:
            raise CliError(f"{args.product!r} is not a product of {config.source}")
        fixture = Fixture(name="cli", port=args.port, driver=args.driver, product=product.id,
                          baud=args.baud, device_path=args.path)
        run = UnitRun(fixture=f"cli-{getpass.getuser()}", product=product,
                      device_path=args.path)
        printed = 0

        def show(_: UnitRun) -> None:
            nonlocal printed
            for line in run.log[printed:]:
                print(f"  {line}")
            printed = len(run.log)
            if run.step != "done":
                print(f"{run.step} ...", flush=True)

        port = await open_port(args.port, args.baud)
        try:
            await Pipeline(journal, on_step=show).provision(run, make_driver(fixture, port))
        except UnitError:
            show(run)
            return 1
        finally:
            await port.close()
        show(run)
        assert run.uci is not None
        print(f"done: unit {uci_codec.human(run.uci)} ({run.uci}), {args.path} verified")
        return 0

    try:
        return _with_journal(args, work)
    except UnitError as exc:
        print(f"factory: {exc.reason} -> {exc.action}", file=sys.stderr)
        return 1


def cmd_sim_unit(args: argparse.Namespace) -> int:
    from factory.sim.run import run_sim_unit

    return asyncio.run(run_sim_unit(args))


def cmd_label_render(args: argparse.Namespace) -> int:
    from factory.labels.layout import LabelData
    from factory.labels.render import render_labels
    from factory.labels.service import Labels

    async def work(journal: Journal, config: StationConfig) -> int:
        labels = Labels(config, journal)
        data, template = [], None
        for text in args.ucis:
            unit = await journal.unit(uci_codec.parse(text))
            product = config.product(unit.product)
            if product is None or not product.label:
                raise CliError(f"unit {unit.uci}'s product {unit.product} has no label "
                               "template in this config")
            if template is not None and labels.template(product) != template:
                raise CliError("these units use different label templates; render them apart")
            template = labels.template(product)
            data.append(LabelData.for_product(product, unit.uci, date=datetime.date.today()))
        assert template is not None
        pages = await asyncio.to_thread(render_labels, template, data, args.output)
        print(f"{args.output}: {pages} label(s), template {template.name}")
        return 0

    return _with_journal(args, work)


def cmd_label_sheet(args: argparse.Namespace) -> int:
    from factory.issuing import issue_request
    from factory.labels.layout import LabelData
    from factory.labels.render import render_sheet
    from factory.labels.sheet import load_sheet

    async def work(journal: Journal, config: StationConfig) -> int:
        product = config.product(args.product)
        if product is None:
            raise CliError(f"{args.product!r} is not a product of {config.source}")
        sheet = load_sheet(config.labels_dir / f"{args.sheet}.toml")
        sheet = dataclasses.replace(sheet, label=sheet.label.with_qr_content(product.qr))
        body, _ = issue_request({"product": product.id, "count": args.count}, config,
                                _actor())
        ucis = (await journal.issue(body)).ucis
        today = datetime.date.today()
        pages = await asyncio.to_thread(
            render_sheet, sheet, [LabelData.for_product(product, u, date=today) for u in ucis],
            args.output)
        # Labelled before any write: the line flashes these UCIs later (by hardware id).
        await asyncio.gather(*(
            journal.record(u, "labelled", _actor(), {"sheet": str(args.output),
                                                     "page": i // sheet.cells + 1,
                                                     "cell": i % sheet.cells + 1},
                           state="labelled")
            for i, u in enumerate(ucis)))
        print(f"{args.output}: {len(ucis)} new UCIs on {pages} sheet(s) of {sheet.cells}")
        return 0

    return _with_journal(args, work)


def cmd_label_reprint(args: argparse.Namespace) -> int:
    from factory.labels.service import Labels

    async def work(journal: Journal, config: StationConfig) -> int:
        if not args.reason.strip():
            raise CliError("--reason must say why the label is printed again")
        unit = await journal.unit(uci_codec.parse(args.uci))
        product = config.product(unit.product)
        if product is None or not product.label:
            raise CliError(f"unit {unit.uci}'s product has no label template in this config")
        if unit.state == "voided":
            raise CliError(f"unit {unit.uci} is voided; its label must not be printed again")
        pdf = await Labels(config, journal).make(unit.uci, product, _actor(),
                                                 reason=args.reason.strip())
        where = (f"the station prints it on {config.printer.queue}" if config.printer.enabled
                 else "no printer is configured: print the PDF by hand")
        print(f"reprint of {uci_codec.human(unit.uci)} journaled; {pdf}; {where}")
        return 0

    return _with_journal(args, work)


def cmd_config_check(args: argparse.Namespace) -> int:
    config = load(args.file)
    print(f"{args.file}: OK (station {config.station_id}, {len(config.products)} products, "
          f"journal {config.journal}, listen {config.host}:{config.port})")
    return 0


# -- parser ---------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factory", description="Factory station: issue Unique Claim IDs and journal every "
                                    "unit off the line.")
    parser.add_argument("-c", "--config", help="station config TOML (default: $FACTORY_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], text: str,
                parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=text, description=text)
        p.set_defaults(func=func)
        return p

    p = command("serve", cmd_serve, "Run the station: HTTP API and journal, until SIGTERM.")
    p.add_argument("--listen", help="HOST:PORT, overriding [station] listen")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")

    p = command("issue", cmd_issue, "Issue UCIs straight into the journal (no server needed).")
    p.add_argument("--product", required=True, help="product id from the config")
    p.add_argument("--count", type=int, help="issue a batch of N new UCIs")
    p.add_argument("--hardware-id", help="MAC or chip serial: the same one gets the same UCI")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("units", cmd_units, "List units, newest first.")
    p.add_argument("--state", help="only units in this state (issued, voided, ...)")
    p.add_argument("--product", help="only this product")
    p.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("unit", cmd_unit, "Show one unit and every event of it.")
    p.add_argument("uci", help="UCI in any form (7KQ2-M9XD-3FHT-0W5R-W, lower case, ...)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("void", cmd_void, "Void a unit: its UCI is never used again.")
    p.add_argument("uci", help="UCI in any form")
    p.add_argument("--reason", required=True, help="why (kept in the journal)")

    token = command("token", lambda a: _usage(token), "Manage API tokens.")
    token_sub = token.add_subparsers(required=True, metavar="ACTION")
    p = command("new", cmd_token_new, "Make a token; it is printed once, only its hash is kept.",
                token_sub)
    p.add_argument("--role", required=True, choices=ROLES,
                   help="device: issue only; operator: issue, void, read; viewer: read")
    p.add_argument("--name", required=True, help="who holds it (e.g. fixture-3, alice)")
    command("list", cmd_token_list, "List tokens (names and roles, never the tokens).",
            token_sub)
    p = command("revoke", cmd_token_revoke, "Revoke a token by name.", token_sub)
    p.add_argument("name")

    journal = command("journal", lambda a: _usage(journal), "Check or export the journal.")
    journal_sub = journal.add_subparsers(required=True, metavar="ACTION")
    command("verify", cmd_journal_verify,
            "Check the hash chain; names the first event altered or removed (exit 1).",
            journal_sub)
    p = command("export", cmd_journal_export, "Export every event for an audit.", journal_sub)
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")

    p = command("provision", cmd_provision,
                "Provision one unit on a port now, printing each step (no server needed).")
    p.add_argument("--port", required=True, help="device path or socket://HOST:PORT")
    p.add_argument("--driver", required=True, help="console or framed")
    p.add_argument("--product", required=True, help="product id from the config")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--path", default="config/device.json5", help="device.json5 on the unit")

    p = command("sim-unit", cmd_sim_unit,
                "Run a simulated unit on a new pseudo-terminal (prints its path).")
    p.add_argument("--driver", required=True, choices=("console", "framed"))
    p.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (default)")
    p.add_argument("--root", required=True, type=Path, help="folder holding the unit's files")
    p.add_argument("--link", type=Path, help="also make this symlink to the pty")
    p.add_argument("--baud", type=int, default=115200,
                   help="pace bytes like a wire at this rate (0: as fast as the pty goes)")
    p.add_argument("--hardware-id", default="7c:df:a1:00:03:3b", help="the unit's MAC")
    p.add_argument("--model", default="SIM-1")
    p.add_argument("--silent", action="store_true", help="misbehave: never answer")
    p.add_argument("--garbage", action="store_true", help="misbehave: answer random bytes")
    p.add_argument("--drop-rate", type=float, default=0.0, help="misbehave: drop bytes")
    p.add_argument("--corrupt-next", type=int, default=0,
                   help="misbehave: corrupt the next N answers")
    p.add_argument("--hangup-after", type=int, help="misbehave: unplug after N bytes in")
    p.add_argument("--corrupt-storage", action="store_true",
                   help="misbehave: store a file that differs from what was sent")

    label = command("label", lambda a: _usage(label), "Render, sheet and reprint labels.")
    label_sub = label.add_subparsers(required=True, metavar="ACTION")
    p = command("render", cmd_label_render, "Render the labels of existing units to a PDF.",
                label_sub)
    p.add_argument("ucis", nargs="+", metavar="UCI")
    p.add_argument("-o", "--output", required=True, type=Path)
    p = command("sheet", cmd_label_sheet,
                "Issue N new UCIs and lay their labels out on sheets (labelled before any "
                "write; the line flashes them later).", label_sub)
    p.add_argument("--product", required=True)
    p.add_argument("--count", required=True, type=int)
    p.add_argument("--sheet", default="a4-3x8", help="sheet template in the labels folder")
    p.add_argument("-o", "--output", required=True, type=Path)
    p = command("reprint", cmd_label_reprint,
                "Print a unit's label again; the reason and the copy number are journaled.",
                label_sub)
    p.add_argument("uci")
    p.add_argument("--reason", required=True)

    config = command("config", lambda a: _usage(config), "Station config files.")
    config_sub = config.add_subparsers(required=True, metavar="ACTION")
    p = command("check", cmd_config_check, "Validate a config file without starting anything.",
                config_sub)
    p.add_argument("file", type=Path)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
