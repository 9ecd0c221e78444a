"""`factory config check`: validate a station config without starting anything."""

from __future__ import annotations

import argparse
from pathlib import Path

from factory.cli.common import Subcommands, command, group
from factory.config import load


def register(sub: Subcommands) -> None:
    actions = group(sub, "config", "Station config files.")
    p = command(actions, "check", cmd_config_check,
                "Validate a config file, its products' label templates and the NVS "
                "partitions of those esptool fixtures flash, without starting anything.")
    p.add_argument("file", type=Path)


def cmd_config_check(args: argparse.Namespace) -> int:
    from factory.labels.products import ProductLabels
    from factory.station import check_factory_data

    config = load(args.file)
    ProductLabels(config).check()  # templates need no journal
    check_factory_data(config)
    print(f"{args.file}: OK (station {config.station_id}, {len(config.products)} products, "
          f"journal {config.journal}, listen {config.host}:{config.port})")
    return 0
