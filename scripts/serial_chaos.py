"""Serial chaos for long runs: fixtures side by side on one journal, fed simulated units with
seeded random faults (factory/testbed/sim/chaos.py); prints, per fault kind, how many units met it,
how their first turn went and whether they completed when plugged in again healthy, then
every invariant that did not hold (none, or the exit status is 1).

Run from the repository root:
    .venv/bin/python scripts/serial_chaos.py [--seed 1] [--fixtures 8] [--console 2]
                                             [--units 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import MappingProxyType

from factory.config import Product
from factory.journal import open_journal
from factory.testbed.sim.chaos import FIRST_OUTCOMES, Line, Outcome, check, drivers, schedule, table


async def main(args: argparse.Namespace) -> int:
    product = Product(id="01H4R15D3Q7K9M2X8Z5V6W4T0N", name="Acme Air Sensor",
                      model="AQ-100", fields=MappingProxyType({}))
    kinds = drivers(args.fixtures, args.console)
    plans = schedule(args.seed, args.fixtures, args.units)
    with tempfile.TemporaryDirectory(prefix="serial-chaos-") as tmp:
        folder = Path(tmp)
        journal = await open_journal(folder / "journal.sqlite", "chaos")
        line = Line(journal, product, folder, kinds)
        started = time.monotonic()
        done = 0

        def progress(_: Outcome) -> None:
            nonlocal done
            done += 1
            if done % 25 == 0:
                print(f"  {done} units ({time.monotonic() - started:.0f} s)", file=sys.stderr)

        try:
            outcomes = await line.run(plans, progress)
            broken = await check(line)
        finally:
            await line.stop()
            await journal.close()
        took = time.monotonic() - started
    print(f"seed {args.seed}: {len(outcomes)} units on {args.fixtures} fixtures "
          f"({args.console} console) in {took:.0f} s")
    header = f"{'fault':12} {'units':>5} " + " ".join(f"{o:>10}" for o in FIRST_OUTCOMES)
    print(header + f" {'completed':>10}")
    completed = Counter(o.plan.fault for o in outcomes if o.final == "verified")
    for fault, count, first in table(outcomes):
        print(f"{fault:12} {count:5} " + " ".join(f"{first[o]:10}" for o in FIRST_OUTCOMES)
              + f" {completed[fault]:10}")
    print("first turn: verified = despite the fault; failed = journaled failed with its UCI;"
          " unnoticed = never taken for a unit (no UCI); completed = verified, at the latest"
          " when plugged in again healthy")
    odd = [o for o in outcomes if o.plan.fault == "healthy" and o.first != "verified"]
    for o in odd:
        print(f"healthy but {o.first}: {o.plan.mac} on fixture {o.plan.fixture} ({o.driver}),"
              f" the fixture was {o.note}")
    if broken:
        print(f"{len(broken)} invariants broken:")
        for line_ in broken:
            print("  " + line_)
        return 1
    print("held: no fixture stopped; every verified unit holds the device file the journal "
          "verified; every failed unit completed with its own UCI; no UCI twice; journal "
          "verifies")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fixtures", type=int, default=8)
    parser.add_argument("--console", type=int, default=2, help="how many are console units")
    parser.add_argument("--units", type=int, default=50, help="units per fixture")
    logging.basicConfig(level=logging.ERROR)  # each unit's trouble is the table's, not a log
    sys.exit(asyncio.run(main(parser.parse_args())))
