"""`factory sim-unit --driver esptool`: the simulated ESP chip from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from factory.testbed.sim.esp import EspFaults, run_esp_unit
from factory.testbed.sim.esp_chips import CHIPS
from factory.testbed.sim.pty import SimPty


def parse_mac(text: str) -> bytes:
    """A MAC as 6 bytes, from 12 hex digits with or without ':' or '-'."""
    digits = text.replace(":", "").replace("-", "")
    if len(digits) != 12:
        raise ValueError(f"{text!r} is not a MAC (12 hex digits)")
    return bytes.fromhex(digits)


async def esp_unit(args: argparse.Namespace, sim: SimPty, root: Path, hardware_id: str) -> None:
    faults = EspFaults(wrong_md5=args.wrong_md5, write_protected=args.write_protected,
                       corrupt_readback=args.corrupt_readback,
                       hangup_mid_flash=args.hangup_mid_flash,
                       corrupt_storage=args.corrupt_storage)
    await run_esp_unit(sim, root, CHIPS[args.chip], parse_mac(hardware_id), faults)
