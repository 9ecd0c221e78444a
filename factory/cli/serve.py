"""`factory serve`: run the station."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

from factory.cli.common import Subcommands, command, station_config
from factory.config import parse_listen


def register(sub: Subcommands) -> None:
    p = command(sub, "serve", cmd_serve, "Run the station: HTTP API and journal, until SIGTERM.")
    p.add_argument("--listen", help="HOST:PORT, overriding [station] listen")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")


def cmd_serve(args: argparse.Namespace) -> int:
    from factory.station import serve  # aiohttp only when serving

    config = station_config(args)
    if args.listen:
        host, port = parse_listen("--listen", args.listen)
        config = dataclasses.replace(config, host=host, port=port)
    asyncio.run(serve(config, access_log=not args.no_access_log))
    return 0
