"""`factory journal verify|export`: check the hash chain, export every event for an audit."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any, TextIO

from factory.cli.common import Subcommands, actor, command, group, with_journal
from factory.config import StationConfig
from factory.files import open_private
from factory.journal.interface import Journal

EXPORT_FIELDS = ("seq", "uci", "kind", "at", "station", "actor", "data", "hash")


def register(sub: Subcommands) -> None:
    actions = group(sub, "journal", "Check or export the journal.")
    command(actions, "verify", cmd_journal_verify,
            "Check the hash chain; names the first event altered or removed (exit 1).")
    p = command(actions, "export", cmd_journal_export, "Export every event for an audit.")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    command(actions, "accept-loss", cmd_journal_accept_loss,
            "Accept what holds the journal (its newest events lost, or it is not the journal "
            "its anchor recorded): journal it and issue again.")


def cmd_journal_verify(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        result = await journal.verify()
        if result.ok and not journal.hold:
            print(f"journal {config.journal}: OK, {result.checked} events, chain intact")
            return 0
        if not result.ok:
            print(f"journal {config.journal}: TAMPERED at event {result.bad_seq}: "
                  f"{result.reason} ({result.checked} events before it are intact)")
        else:
            print(f"journal {config.journal}: NOT OK: its {result.checked} events chain "
                  "intact, but:")
        if journal.hold:
            print(f"journal {config.journal}: {journal.hold}")
        return 1

    return with_journal(args, work, inspect=True)


def cmd_journal_accept_loss(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        if not journal.hold:
            print(f"journal {config.journal}: nothing to accept, the journal is not held")
            return 0
        data = await journal.accept_loss(actor())
        print(f"journal {config.journal}: loss accepted and journaled ({data['problem']}); "
              "issuing resumes (restart a station that is running to let it issue)")
        return 0

    return with_journal(args, work)


def cmd_journal_export(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    if args.output:
        # Audit exports hold the whole journal: private like the journal itself.
        out = open(open_private(args.output), "w", encoding="utf-8", newline="")  # noqa: SIM115

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
        return with_journal(args, work)
    finally:
        if out is not sys.stdout:
            out.close()
