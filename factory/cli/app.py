"""The `factory` parser and entry point: global options, the command modules, and how a
failed command ends (a message and exit status 2, never a traceback)."""

from __future__ import annotations

import argparse
import logging
import sys

from factory import uci as uci_codec
from factory.cli import (
    config,
    fleet,
    journal,
    labels,
    outbox,
    preclaim,
    provision,
    registry,
    serve,
    simcloud,
    tokens,
    units,
)
from factory.cli.common import CliError
from factory.config import ConfigError
from factory.issuing import InvalidField
from factory.journal.errors import JournalError
from factory.labels.errors import LabelError
from factory.listeners import ListenError

# Each module adds its commands with `register(sub)`; this order is the order of `--help`.
COMMAND_MODULES = (serve, units, tokens, journal, outbox, fleet, provision, preclaim, labels,
                   config, registry, simcloud)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `factory` console script."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result: int = args.func(args)
        return result
    except (CliError, ConfigError, InvalidField, JournalError, LabelError, ListenError,
            uci_codec.UciError) as exc:
        print(f"factory: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then every module's commands."""
    root = argparse.ArgumentParser(
        prog="factory", description="Factory station: issue Unique Claim IDs and journal every "
                                    "unit off the line.")
    root.add_argument("-c", "--config", help="station config TOML (default: $FACTORY_CONFIG)")
    root.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = root.add_subparsers(required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return root
