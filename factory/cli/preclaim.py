"""`factory preclaim`: a batch pre-claim run (factory/batch/preclaim.py) from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from factory.certs import KEY_TYPES
from factory.cli.common import CliError, Subcommands, actor, command, station_config


def register(sub: Subcommands) -> None:
    p = command(sub, "preclaim",
                cmd_preclaim,
                "Pre-claim many units at once: new ones (--count) or issued ones (--from "
                "CSV); one bundle per unit in --out (key 0600, certificate, CA chain, "
                "provision.json5) and report.csv. Run it again to finish an interrupted run.")
    p.add_argument("--product", required=True, help="product id from the config")
    p.add_argument("--account", required=True, help="the account the units are claimed for")
    units = p.add_mutually_exclusive_group()
    units.add_argument("--count", type=int, help="issue N new UCIs for the run")
    units.add_argument("--from", dest="from_csv", type=Path,
                       help="CSV file with a 'uci' column: units already issued")
    p.add_argument("--out", required=True, type=Path, help="the run's folder (made 0700)")
    p.add_argument("--key-type", choices=KEY_TYPES, default="ec-p256")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes making keys (default: every core)")
    p.add_argument("--concurrency", type=int,
                   help="requests in flight at once (default: [upstream] concurrency x 4)")
    p.add_argument("--wait", type=float, default=600,
                   help="seconds to keep trying the upstream before stopping (default 600)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_preclaim(args: argparse.Namespace) -> int:
    from factory.batch.preclaim import PreclaimRun, RunError, read_unit_list
    from factory.journal import open_journal
    from factory.journal.anchor import anchor_path
    from factory.upstream.kinds import upstream_client
    from factory.upstream.outbox import OutboxWorker

    config = station_config(args)
    product = config.product(args.product)
    if product is None:
        raise CliError(f"{args.product!r} is not a product of {config.source}")
    if not config.upstream.enabled:
        raise CliError(f"{config.source} has no [upstream] to pre-claim units with")
    if config.upstream.kind == "rainmaker":
        raise CliError("RainMaker claims a unit by its MAC, read from the chip: its units are "
                       "claimed on the line by their esptool fixtures, not in a batch run")
    if not (args.out / "run.json").exists() and args.count is None and args.from_csv is None:
        raise CliError("say which units: --count N (new ones) or --from units.csv")
    if args.count is not None and not 1 <= args.count <= 1_000_000:
        raise CliError("--count must be 1 to 1000000")
    concurrency = args.concurrency or config.upstream.concurrency * 4
    if not 1 <= concurrency <= 256:
        raise CliError("--concurrency must be 1 to 256")

    async def work() -> int:
        async with contextlib.AsyncExitStack() as stack:
            journal = await open_journal(config.journal_location, config.station_id,
                                         anchor=anchor_path(config.journal))
            stack.push_async_callback(journal.close)
            run = PreclaimRun(journal, product, args.account, args.out, actor=actor(),
                              key_type=args.key_type, jobs=args.jobs,
                              progress=not args.no_progress)
            try:
                listed = read_unit_list(args.from_csv) if args.from_csv else None
                ucis = await run.units(args.count, listed)
            except RunError as exc:
                raise CliError(str(exc)) from exc
            client = await upstream_client(config, stack)
            worker = OutboxWorker(journal, client, concurrency=concurrency, base=0.5, cap=30)
            result = await run.run(ucis, worker, wait=args.wait)
        rate = result.total / result.elapsed if result.elapsed else 0.0
        print(f"{args.out}: {result.preclaimed} pre-claimed, {result.failed} failed, "
              f"{result.pending} still pending, of {result.total} units "
              f"({result.keys_made} keys made, {result.keys_reused} reused) in "
              f"{result.elapsed:.1f} s ({rate:.0f} units/s); report {args.out / 'report.csv'}")
        if result.pending:
            print("some units are not answered yet: run the same command again to finish",
                  file=sys.stderr)
        return 0 if not (result.failed or result.pending) else 1

    return asyncio.run(work())
