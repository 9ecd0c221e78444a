"""What every command module shares: the user-error type, how a command is registered, and
how it reaches the station config and the journal."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from factory.config import StationConfig, load
from factory.journal import open_journal
from factory.journal.anchor import anchor_path
from factory.journal.interface import Journal

# argparse's subparsers type is private and not subscriptable at run time: name it once here.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler: TypeAlias = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """Something the user can fix; printed without a traceback, exit status 2."""


def command(sub: Subcommands, name: str, func: Handler, text: str) -> argparse.ArgumentParser:
    """Add the command `name`, run by `func`; `text` is both its help line and description."""
    p = sub.add_parser(name, help=text, description=text)
    p.set_defaults(func=func)
    return p


def group(sub: Subcommands, name: str, text: str) -> Subcommands:
    """Add a command that only holds actions (`factory token new`); returns their parent."""
    p = command(sub, name, lambda _: usage(p), text)
    return p.add_subparsers(required=True, metavar="ACTION")


def usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def station_config(args: argparse.Namespace) -> StationConfig:
    """The config named by --config or $FACTORY_CONFIG, loaded and validated."""
    path = args.config or os.environ.get("FACTORY_CONFIG")
    if not path:
        raise CliError("no station config: pass --config FILE or set FACTORY_CONFIG")
    return load(path)


def with_journal(args: argparse.Namespace,
                 work: Callable[[Journal, StationConfig], Awaitable[int]], *,
                 create: bool = False, inspect: bool = False) -> int:
    """Run `work` over the station's journal, closing it however `work` ends. Only commands
    that write pass `create` (reading a journal that is not there is an error, not a new
    journal); `inspect` opens a damaged one to look at it."""
    config = station_config(args)

    async def run() -> int:
        journal = await open_journal(config.journal_location, config.station_id, create=create,
                                     inspect=inspect, anchor=anchor_path(config.journal))
        try:
            return await work(journal, config)
        finally:
            await journal.close()

    return asyncio.run(run())


def actor() -> str:
    """Who the journal says did it: the operator's login."""
    return f"cli:{getpass.getuser()}"
