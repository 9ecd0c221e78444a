"""Benchmark serial provisioning against the wire's physical limit.

Run from the repository root:  .venv/bin/python scripts/bench_serial.py [--baud 115200]

1. One unit, per driver (console: a real `sh` behind a simulated console; framed: the
   reference firmware simulator), with the simulator pacing bytes at --baud both ways: the
   time for the whole pipeline (identify, issue into a real journal, write device.json5, read
   back and verify) against the wire's physical limit for the payload, bytes x 10 / baud
   (8N1). Also the bytes that crossed the wire per payload byte, and the round trips. The
   plain baseline in the same run: the payload pushed raw through the same paced pty.
2. Eight fixtures at once against one: units per minute through one fixture in a row, and
   through eight fixtures side by side (target: at least 7x). The simulated units run in
   processes of their own (`--farm`), as real units are devices of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

from factory.config import Fixture, Product
from factory.config.drivers import ConsoleSettings
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.testbed.sim.console import run_console_unit
from factory.testbed.sim.framed import run_framed_unit
from factory.testbed.sim.pty import SimPty
from factory.units.device_file import render
from factory.units.driver import Identity
from factory.units.fixture import make_driver
from factory.units.pipeline import Pipeline, UnitRun
from factory.units.port import Port, open_port

DEVICE = "config/device.json5"
_MACS = itertools.count(1)


def new_mac() -> str:
    """A hardware id never used before in this run (a re-used one is only re-checked)."""
    n = next(_MACS)
    return "02:00:00:" + ":".join(f"{(n >> s) & 0xFF:02x}" for s in (16, 8, 0))
IDENTIFY = "cat sys/class/net/eth0/address"  # the console sim's root holds the MAC there


def product(extra_bytes: int) -> Product:
    fields: dict[str, str | int | float | bool] = {"hardware_revision": "C", "region": "eu"}
    if extra_bytes:
        fields["blob"] = "x" * extra_bytes  # stands in for certificates and claim data
    return Product(id="01H4R15D3Q7K9M2X8Z5V6W4T0N", name="Acme Air Sensor", model="AQ-100",
                   description="Indoor air quality sensor", fields=MappingProxyType(fields))


async def start_unit(driver: str, root: Path, mac: str,
                     baud: int) -> tuple[SimPty, asyncio.Task[None]]:
    sim = SimPty(baud=baud)
    if driver == "framed":
        unit = run_framed_unit(sim, root, Identity(hardware_id=mac, model="SIM-1"))
    else:
        unit = run_console_unit(sim, root, mac)
    return sim, asyncio.create_task(unit)


async def provision_one(journal: Journal, driver: str, work: Path, mac: str, baud: int,
                        prod: Product) -> tuple[float, Port, UnitRun]:
    """Plug in a fresh simulated unit and provision it; returns the pipeline's time."""
    sim, task = await start_unit(driver, work / mac.replace(":", ""), mac, baud)
    port = await open_port(sim.path, baud)
    fixture = Fixture(name=f"bench-{mac[-2:]}", port=sim.path, driver=driver,  # type: ignore[arg-type]
                      product=prod.id, baud=baud, device_path=DEVICE,
                      console=ConsoleSettings(identify_command=IDENTIFY, timeout=10))
    run = UnitRun(fixture=fixture.name, product=prod, device_path=DEVICE)
    try:
        unit_driver = make_driver(fixture, port)
        await unit_driver.wake()  # the unit is up before the clock starts, as on a line
        started = time.perf_counter()
        await Pipeline(journal).provision(run, unit_driver)
        elapsed = time.perf_counter() - started
    finally:
        await port.close()
        sim.hangup()
        await asyncio.gather(task, return_exceptions=True)
    return elapsed, port, run


async def provision_at(journal: Journal, driver: str, path: str, baud: int,
                       prod: Product) -> None:
    """Provision the unit waiting on `path` (a unit of a farm process)."""
    port = await open_port(path, baud)
    fixture = Fixture(name="bench", port=path, driver=driver,  # type: ignore[arg-type]
                      product=prod.id, baud=baud, device_path=DEVICE,
                      console=ConsoleSettings(identify_command=IDENTIFY, timeout=10))
    try:
        await Pipeline(journal).provision(
            UnitRun(fixture=fixture.name, product=prod, device_path=DEVICE),
            make_driver(fixture, port))
    finally:
        await port.close()


async def farm(driver: str, count: int, baud: int, root: Path) -> int:
    """`--farm`: `count` simulated units in this process, one pty each; prints their paths
    as one JSON line, serves them until stdin closes. Units run apart from the station, as
    real ones do, so the station's own scaling is what is measured."""
    units = []
    for _ in range(count):
        mac = f"02:{os.getpid() & 0xFF:02x}:{new_mac()[6:]}"
        units.append(await start_unit(driver, root / mac.replace(":", ""), mac, baud))
    print(json.dumps([sim.path for sim, _ in units]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for sim, task in units:
        sim.hangup()
        await asyncio.gather(task, return_exceptions=True)
    return 0


async def start_farm(driver: str, count: int, baud: int,
                     root: Path) -> tuple[asyncio.subprocess.Process, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--farm", str(count), "--driver", driver, "--baud",
        str(baud), "--root", str(root), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    paths: list[str] = json.loads(await proc.stdout.readline())
    return proc, paths


async def stop_farm(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    await proc.wait()


async def fixtures_per_minute(journal: Journal, driver: str, fixtures: int, units: int,
                              baud: int, prod: Product, root: Path) -> float:
    """Units per minute through `fixtures` fixtures side by side, `units` each in a row."""
    farms = [await start_farm(driver, units, baud, root / f"farm{i}") for i in range(fixtures)]
    try:
        started = time.perf_counter()

        async def line(paths: list[str]) -> None:
            for path in paths:
                await provision_at(journal, driver, path, baud, prod)

        await asyncio.gather(*(line(paths) for _, paths in farms))
        return fixtures * units / (time.perf_counter() - started) * 60
    finally:
        for proc, _ in farms:
            await stop_farm(proc)


async def raw_transfer(payload: bytes, baud: int) -> float:
    """The plain baseline: the payload bytes alone through the same paced pty."""
    sim = SimPty(baud=baud)
    port = await open_port(sim.path, baud)
    try:
        started = time.perf_counter()
        await port.write(payload)
        got = 0
        while got < len(payload):
            got += len(await sim.read())
        return time.perf_counter() - started
    finally:
        await port.close()
        sim.hangup()


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-serial-") as tmp:
        work = Path(tmp)
        journal = await open_journal(work / "journal.sqlite", "bench")
        try:
            print(f"serial provisioning at {args.baud} baud (8N1: 10 bits a byte), "
                  f"{args.rounds} units per figure\n")
            print(f"{'driver':<8} {'payload':>8} {'limit ms':>9} {'raw ms':>7} "
                  f"{'pipeline ms':>12} {'ratio':>6} {'wire/payload':>13} {'round trips':>12}")
            for extra in (0, 4000):
                prod = product(extra)
                payload = len(render(prod, "0" * 16))
                limit = payload * 10 / args.baud
                raw = statistics.median([await raw_transfer(b"x" * payload, args.baud)
                                         for _ in range(3)])
                for driver in ("framed", "console"):
                    results = []
                    for _ in range(args.rounds):
                        results.append(await provision_one(
                            journal, driver, work, new_mac(), args.baud, prod))
                    elapsed = statistics.median(r[0] for r in results)
                    port = results[-1][1]
                    wire = (port.bytes_in + port.bytes_out) / payload
                    print(f"{driver:<8} {payload:>8,} {limit * 1000:>9.1f} {raw * 1000:>7.1f} "
                          f"{elapsed * 1000:>12.1f} {elapsed / limit:>5.2f}x {wire:>12.2f}x "
                          f"{port.writes:>12}")
            print("\n(ratio: pipeline time / physical limit, target <= 1.5x; "
                  "wire/payload: bytes both ways / payload bytes)\n")

            prod = product(0)
            units = args.fixture_units
            for driver in ("framed", "console"):
                one = await fixtures_per_minute(journal, driver, 1, units, args.baud, prod,
                                                work / f"{driver}-1")
                eight = await fixtures_per_minute(journal, driver, 8, units, args.baud, prod,
                                                  work / f"{driver}-8")
                print(f"{driver}: 1 fixture {one:,.0f} units/min; 8 fixtures {eight:,.0f} "
                      f"units/min = {eight / one:.2f}x (target >= 7x)")
            result = await journal.verify()
            print(f"\njournal: {result.checked} events, chain "
                  f"{'intact' if result.ok else 'BROKEN: ' + result.reason}")
            return 0 if result.ok else 1
        finally:
            await journal.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--farm", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--rounds", type=int, default=5, help="units per single-unit figure")
    parser.add_argument("--fixture-units", type=int, default=4,
                        help="units per fixture in the 1-vs-8 comparison")
    parsed = parser.parse_args()
    if parsed.farm:
        sys.exit(asyncio.run(farm(parsed.driver, parsed.farm, parsed.baud, parsed.root)))
    sys.exit(asyncio.run(main(parsed)))
