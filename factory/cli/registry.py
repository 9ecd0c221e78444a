"""`factory registry serve|token`: the reference registry of docs/upstream-http.md."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

from factory.cli.common import CliError, Subcommands, command, group
from factory.config import parse_listen
from factory.tokens import valid_name


def register(sub: Subcommands) -> None:
    actions = group(sub, "registry", "The reference registry: registration, claims, "
                                     "certificates (docs/upstream-http.md).")
    p = command(actions, "serve", cmd_serve, "Run the registry until SIGTERM.")
    p.add_argument("--db", required=True, type=Path, help="SQLite file (made 0600 if new)")
    p.add_argument("--listen", default="127.0.0.1:8700", help="HOST:PORT (default %(default)s;"
                                                              " port 0 picks a free one)")
    p.add_argument("--endpoint", default="mqtts://localhost:8883",
                   help="the endpoint handed to units with their certificate")
    p.add_argument("--poll-delay", type=int, default=10,
                   help="seconds a unit is told to wait before polling again (default 10)")
    p = command(actions, "token", cmd_token,
                "Make a product or account token; printed once, only its hash is kept.")
    p.add_argument("--db", required=True, type=Path, help="SQLite file (made 0600 if new)")
    p.add_argument("--kind", required=True, choices=("product", "account"),
                   help="product: stations and units; account: a user (its name is the account)")
    p.add_argument("--name", required=True, help="who holds it (e.g. line-1, alice)")


def cmd_serve(args: argparse.Namespace) -> int:
    from factory.testbed.registry.app import Settings, serve  # aiohttp only when serving

    host, port = parse_listen("--listen", args.listen)
    if args.poll_delay < 1:
        raise CliError("--poll-delay must be at least 1 second")
    asyncio.run(serve(Settings(db=args.db, host=host, port=port, endpoint=args.endpoint,
                               poll_delay=args.poll_delay)))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from factory.testbed.registry.store import Store

    if not valid_name(args.name):
        raise CliError("a token name is 1-64 letters, digits and . _ @ -")

    async def work() -> str:
        store = await Store.open(args.db)
        try:
            now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            return await store.add_token(args.kind, args.name, now)
        finally:
            await store.close()

    print(asyncio.run(work()))
    print(f"({args.kind} token {args.name!r}: shown only this once, keep it safe)",
          file=sys.stderr)
    return 0
