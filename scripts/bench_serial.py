"""Benchmark serial provisioning against the wire's physical limit.

Run from the repository root:  .venv/bin/python scripts/bench_serial.py [--baud 115200]

1. One unit, per driver (console: a real `sh` behind a simulated console; framed: the
   reference firmware simulator), with the simulator pacing bytes at --baud both ways: the
   time for the whole pipeline (identify, issue into a real journal, write device.json5, read
   back and verify) against the wire's physical limit for the payload, bytes x 10 / baud
   (8N1). Also the bytes that crossed the wire per payload byte, and the round trips. The
   plain baseline in the same run: the payload pushed raw through the same paced pty.
2. Eight fixtures at once against one: units per minute through one fixture in a row, and
   through eight fixtures side by side (target: at least 7x).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import MappingProxyType

from factory.config import Fixture, Product
from factory.journal.sqlite import Journal
from factory.sim.console import run_console_unit
from factory.sim.framed import run_framed_unit
from factory.sim.pty import SimPty
from factory.units.device_file import render
from factory.units.driver import Identity
from factory.units.fixture import make_driver
from factory.units.pipeline import Pipeline, UnitRun
from factory.units.port import Port, open_port
from factory.units.settings import ConsoleSettings

DEVICE = "config/device.json5"
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


async def timed(rounds: int, job: Callable[[int], Awaitable[object]]) -> list[float]:
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        await job(i)
        times.append(time.perf_counter() - started)
    return times


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-serial-") as tmp:
        work = Path(tmp)
        journal = await Journal.open(work / "journal.sqlite", "bench")
        try:
            print(f"serial provisioning at {args.baud} baud (8N1: 10 bits a byte), "
                  f"{args.rounds} units per figure\n")
            print(f"{'driver':<8} {'payload':>8} {'limit ms':>9} {'raw ms':>7} "
                  f"{'pipeline ms':>12} {'ratio':>6} {'wire/payload':>13} {'round trips':>12}")
            n = 0
            for extra in (0, 4000):
                prod = product(extra)
                payload = len(render(prod, "0" * 16))
                limit = payload * 10 / args.baud
                raw = statistics.median([await raw_transfer(b"x" * payload, args.baud)
                                         for _ in range(3)])
                for driver in ("framed", "console"):
                    results = []
                    for _ in range(args.rounds):
                        n += 1
                        results.append(await provision_one(
                            journal, driver, work, f"02:00:00:00:{n // 256:02x}:{n % 256:02x}",
                            args.baud, prod))
                    elapsed = statistics.median(r[0] for r in results)
                    port = results[-1][1]
                    wire = (port.bytes_in + port.bytes_out) / payload
                    print(f"{driver:<8} {payload:>8,} {limit * 1000:>9.1f} {raw * 1000:>7.1f} "
                          f"{elapsed * 1000:>12.1f} {elapsed / limit:>5.2f}x {wire:>12.2f}x "
                          f"{port.writes:>12}")
            print("\n(ratio: pipeline time / physical limit, target <= 1.5x; "
                  "wire/payload: bytes both ways / payload bytes)\n")

            prod = product(0)
            for driver in ("framed", "console"):
                units = args.fixture_units

                async def one_fixture(i: int, driver: str = driver, units: int = units) -> None:
                    for k in range(units):
                        await provision_one(journal, driver, work,
                                            f"02:00:00:01:{i:02x}:{k:02x}", args.baud, prod)

                async def eight(i: int, driver: str = driver, units: int = units) -> None:
                    await asyncio.gather(*(
                        provision_one(journal, driver, work, f"02:00:00:{2 + i:02x}:{f:02x}:"
                                      f"{k:02x}", args.baud, prod)
                        for f in range(8) for k in range(units)))

                single = statistics.median(await timed(1, one_fixture))
                parallel = statistics.median(await timed(1, eight))
                per_min_1 = units / single * 60
                per_min_8 = 8 * units / parallel * 60
                print(f"{driver}: 1 fixture {per_min_1:,.0f} units/min; 8 fixtures "
                      f"{per_min_8:,.0f} units/min = {per_min_8 / per_min_1:.2f}x "
                      "(target >= 7x)")
            result = await journal.verify()
            print(f"\njournal: {result.checked} events, chain "
                  f"{'intact' if result.ok else 'BROKEN: ' + result.reason}")
            return 0 if result.ok else 1
        finally:
            await journal.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--rounds", type=int, default=5, help="units per single-unit figure")
    parser.add_argument("--fixture-units", type=int, default=4,
                        help="units per fixture in the 1-vs-8 comparison")
    sys.exit(asyncio.run(main(parser.parse_args())))
