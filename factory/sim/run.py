"""`factory sim-unit`: a simulated unit on a fresh pseudo-terminal, until Ctrl-C or unplug."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from factory.sim.pty import Misbehaviour, SimPty
from factory.units.driver import Identity


def misbehaviour(args: argparse.Namespace) -> Misbehaviour:
    """The faults asked for on the command line."""
    return Misbehaviour(silent=args.silent, garbage=args.garbage, drop_rate=args.drop_rate,
                        corrupt_next=args.corrupt_next, hangup_after_bytes=args.hangup_after,
                        corrupt_storage=args.corrupt_storage)


def _relink(link: Path | None, target: str | None) -> None:
    """Point `link` at the pty (None: remove it); tiny, so done inline in the loop."""
    if link is None:
        return
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    if target is not None:
        link.symlink_to(target)


async def run_sim_unit(args: argparse.Namespace) -> int:
    """Serve one simulated unit; prints the pty path (and link) on the first line."""
    root: Path = args.root
    root.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before anything runs
    sim = SimPty(baud=args.baud or None, misbehaviour=misbehaviour(args))
    link: Path | None = args.link
    _relink(link, sim.path)
    print(sim.path + (f" (linked as {link})" if link else ""), flush=True)
    if args.driver == "framed":
        from factory.sim.framed import run_framed_unit
        unit = run_framed_unit(sim, root, Identity(hardware_id=args.hardware_id,
                                                   model=args.model, firmware="sim-1.0"),
                               keygen=not args.no_keygen)
    else:
        from factory.sim.console import run_console_unit
        unit = run_console_unit(sim, root, args.hardware_id, openssl=not args.no_keygen)
    task = asyncio.create_task(unit)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        sim.hangup()
        _relink(link, None)
    print("unit unplugged", file=sys.stderr)
    return 0
