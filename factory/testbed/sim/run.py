"""`factory sim-unit`: a simulated unit on a fresh pseudo-terminal, until Ctrl-C or unplug."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from factory.testbed.sim.pty import Misbehaviour, SimPty
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
    """Serve one simulated unit, or with --arrive-every a new one every so many seconds;
    prints each unit's pty path (and link) on a line of its own."""
    every: float | None = args.arrive_every
    if every is not None and every <= 0:
        print("factory: --arrive-every must be a number of seconds above 0", file=sys.stderr)
        return 2
    link: Path | None = args.link
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    count = 0
    while not stop.is_set():
        count += 1
        root: Path = args.root
        hardware_id = args.hardware_id
        if every is not None:
            # A new unit off the line: its own identity and its own (empty) storage.
            hardware_id = new_mac()
            root = args.root / f"{count:05d}-{hardware_id.replace(':', '')}"
            _prune(args.root, keep=KEEP_ROOTS)
        root.mkdir(parents=True, exist_ok=True)
        sim = SimPty(baud=args.baud or None, misbehaviour=misbehaviour(args))
        _relink(link, sim.device)
        print(sim.device + (f" (linked as {link})" if link else "")
              + (f" unit {hardware_id} in {root}" if every is not None else ""), flush=True)
        task = asyncio.create_task(_unit(args, sim, root, hardware_id))
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([task, waiter], timeout=every, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # Unplugged: the link goes first, then the pty. The other way round the link points
        # for a moment at a pty number the kernel may already have given to another program,
        # and a fixture polling the link opens that one (a soak's fixture held another test's
        # pty for two minutes).
        _relink(link, None)
        sim.hangup()
        if every is None:
            break
    print("unit unplugged", file=sys.stderr)
    return 0


KEEP_ROOTS = 20  # --arrive-every keeps the storage of this many recent units


def _unit(args: argparse.Namespace, sim: SimPty, root: Path,
          hardware_id: str) -> Coroutine[Any, Any, None]:
    """The simulated unit's coroutine for the chosen driver."""
    if args.driver == "esptool":
        from factory.testbed.sim.esp_run import esp_unit
        return esp_unit(args, sim, root, hardware_id)
    if args.driver == "framed":
        from factory.testbed.sim.framed import run_framed_unit
        return run_framed_unit(sim, root, Identity(hardware_id=hardware_id, model=args.model,
                                                   firmware="sim-1.0"),
                               keygen=not args.no_keygen)
    from factory.testbed.sim.console import run_console_unit
    return run_console_unit(sim, root, hardware_id, openssl=not args.no_keygen)


def new_mac() -> str:
    """A random locally administered unicast MAC (02:xx:..), as a new board would bring."""
    return ":".join(f"{b:02x}" for b in (2, *secrets.token_bytes(5)))


def _prune(folder: Path, keep: int) -> None:
    """Remove the storage of all but the newest `keep` arrived units."""
    if not folder.is_dir():
        return
    roots = sorted(p for p in folder.iterdir() if p.is_dir() and p.name[:5].isdigit())
    for old in roots[:-keep] if len(roots) > keep else []:
        shutil.rmtree(old, ignore_errors=True)
