"""`factory outbox` and `factory outbox retry`: the upstream backlog, without a server."""

from __future__ import annotations

import argparse
import json

from factory import uci as uci_codec
from factory.cli.common import CliError, Subcommands, actor, command, with_journal
from factory.config import StationConfig
from factory.journal.backlog import backlog
from factory.journal.interface import Journal
from factory.states import OUTBOX_STATES


def register(sub: Subcommands) -> None:
    p = command(sub, "outbox", cmd_outbox,
                "The upstream backlog: how many requests wait, the oldest one's age, and "
                "the entries (pending by default; --state failed lists those set aside).")
    p.add_argument("--state", choices=OUTBOX_STATES, default="pending")
    p.add_argument("--uci", help="only this unit's entries")
    p.add_argument("--limit", type=int, default=20, help="entries to list (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")
    actions = p.add_subparsers(metavar="ACTION")
    retry = command(actions, "retry", cmd_outbox_retry,
                    "Send a unit's failed upstream requests again (after a person fixed what "
                    "the upstream refused); journaled as `requeued`.")
    retry.add_argument("uci", help="UCI in any form")


def cmd_outbox(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        uci = uci_codec.parse(args.uci) if args.uci else None
        view = await backlog(journal, state=args.state, uci=uci, limit=args.limit)
        if args.json:
            print(json.dumps(view, indent=2))
            return 0
        age = view["oldest_age_seconds"]
        print(f"outbox: {view['pending']} pending"
              + (f" (oldest {_age(age)} old)" if age is not None else "")
              + f", {view['failed']} failed (need a person), {view['done']} done")
        for e in view["entries"]:
            extra = f"  next {e['next_attempt']}" if e["next_attempt"] else ""
            error = f"  last error: {e['last_error']}" if e["last_error"] else ""
            print(f"  #{e['id']:<6} {uci_codec.human(e['uci'])}  {e['action']:<9} "
                  f"{e['state']:<7} tries {e['attempts']}{extra}{error}")
        return 0

    return with_journal(args, work)


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        uci = uci_codec.parse(args.uci)
        failed = await journal.outbox_entries("failed", uci)
        if not failed:
            raise CliError(f"unit {uci_codec.human(uci)} has no failed upstream request")
        for entry in failed:
            # Reopened in the event's transaction; a running station's worker sends it.
            await journal.record(uci, "requeued", actor(),
                                 {"entry": entry.id, "action": entry.action},
                                 settles=(entry.id, "pending"))
            print(f"{entry.action} of {uci_codec.human(uci)} queued again (#{entry.id})")
        return 0

    return with_journal(args, work)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
