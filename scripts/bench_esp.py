"""Benchmark ESP32 units (the esptool driver) against the wire's physical limit.

Run from the repository root:  .venv/bin/python scripts/bench_esp.py [--rounds 5]

1. One unit (a simulated ESP32-C3 pacing bytes at the line's rate both ways), at 115200 baud
   and switched to 921600 for flashing: the flash step's time (FLASH_DEFL_BEGIN, the
   compressed image's blocks, FLASH_DEFL_END and their answers) against the wire's limit
   for the bytes that must cross, counted here from the protocol's framing (SLIP, headers,
   checksum, status bytes) and checked against what the simulator saw. Also each phase of
   the whole unit (sync, flasher stub, flash, MD5 + read-back) with its bytes and ratio.
2. Eight fixtures at once against one: units per minute through one fixture in a row, and
   through eight side by side (target: at least 7x). The simulated chips run in processes
   of their own (`--farm`), as real units are devices of their own.
3. The peer baseline, the RainMaker CLI's own flow one board at a time (MAC read, claim, NVS
   build, flash), measured in the same run by scripts/rainmaker_cli_flow.py against the same
   simulated chips and claiming service (`--peer-boards`; or given with
   `--peer-units-per-min`), compared in `peer_line` (target: eight fixtures at least 8x).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from factory.config import Fixture, Product
from factory.config.drivers import EsptoolSettings
from factory.config.nvs import NvsLayout
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.testbed.sim.esp import run_esp_unit
from factory.testbed.sim.esp_chips import CHIPS
from factory.testbed.sim.esp_wire import HEADER, Command, checksum, response, slip
from factory.testbed.sim.pty import SimPty
from factory.units.esp import EsptoolDriver
from factory.units.pipeline import Pipeline, UnitRun

ROM_BAUD = 115200  # where every ESP32 ROM bootloader starts
FLASH_WRITE_SIZE = 0x4000  # the stub's block size (esptool's StubMixin.FLASH_WRITE_SIZE)
STUB_STATUS = 2  # status bytes at the end of the stub's answers
_MACS = itertools.count(1)


def new_mac() -> bytes:
    """A MAC never used before in this run (a re-used one is only re-checked)."""
    n = next(_MACS)
    return bytes([2, os.getpid() & 0xFF, 0, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF])


def product() -> Product:
    """A product as a line makes it: a few fields and a claim URL in the default 24 KiB
    factory partition."""
    return Product(id="01H4R15D3Q7K9M2X8Z5V6W4T0N", name="Acme Air Sensor", model="AQ-100",
                   fields=MappingProxyType({"hw_rev": 3, "region": "EU", "batch": "2026-12"}),
                   nvs=NvsLayout())


def settings(flash_baud: int) -> EsptoolSettings:
    return EsptoolSettings(before="no-reset", after="no-reset", flash_baud=flash_baud,
                           connect_attempts=1)


def request_bytes(command: int, data: bytes, check: int = 0) -> int:
    """A request's size on the wire: SLIP-framed header and data."""
    return len(slip(HEADER.pack(0x00, command, len(data), check) + data))


def answer_bytes(command: int) -> int:
    return len(slip(response(command, status_bytes=STUB_STATUS)))


def flash_wire_bytes(image: bytes, offset: int) -> int:
    """Every byte that must cross to flash `image` compressed through the stub: the bytes
    the simulator must see, both ways."""
    packed = zlib.compress(image, 9)
    blocks = -(-len(packed) // FLASH_WRITE_SIZE)
    total = request_bytes(Command.FLASH_DEFL_BEGIN, struct.pack(
        "<IIIII", len(image), blocks, FLASH_WRITE_SIZE, offset, 0))
    for seq in range(blocks):
        block = packed[seq * FLASH_WRITE_SIZE:(seq + 1) * FLASH_WRITE_SIZE]
        total += request_bytes(Command.FLASH_DEFL_DATA,
                               struct.pack("<IIII", len(block), seq, 0, 0) + block,
                               checksum(block))
    total += request_bytes(Command.FLASH_DEFL_END, struct.pack("<I", 1))
    return total + answer_bytes(Command.FLASH_DEFL_BEGIN) * (blocks + 2)


def wire_seconds(count: int, baud: int) -> float:
    return count * 10 / baud  # 8N1: ten bits a byte


@dataclass
class Phase:
    seconds: float
    bytes: int  # both ways, as the simulator counted them
    baud: int  # the rate they crossed at


@dataclass
class Farm:
    """A process of simulated chips (`--farm`), apart from the station as real chips are."""

    proc: asyncio.subprocess.Process
    paths: list[str]

    async def wire_bytes(self, index: int) -> int:
        """The bytes chip `index` has received and sent so far."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{index}\n".encode())
        await self.proc.stdin.drain()
        return int(json.loads(await self.proc.stdout.readline()))

    async def stop(self) -> float:
        """Unplug every chip; the CPU seconds the farm spent serving them."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        cpu = float(json.loads(await self.proc.stdout.readline() or b"0"))
        await self.proc.wait()
        return cpu


async def one_unit(chips: Farm, index: int, flash_baud: int) -> dict[str, Phase]:
    """Chip `index` of the farm, fresh, through each phase, timed and counted."""
    driver = EsptoolDriver(chips.paths[index], ROM_BAUD, settings(flash_baud))
    phases: dict[str, Phase] = {}

    async def timed(name: str, baud: int, work: Awaitable[object]) -> None:
        before = await chips.wire_bytes(index)
        started = time.perf_counter()
        await work
        took = time.perf_counter() - started
        phases[name] = Phase(took, await chips.wire_bytes(index) - before, baud)

    await timed("sync + chip", ROM_BAUD, driver.present())
    rate = max(flash_baud, ROM_BAUD)
    await timed("flasher stub", ROM_BAUD, driver._call(driver._link.ready))
    prod = replace(product(), claim="pre", account="bench")  # certificate files follow
    where, image = driver.render(prod, "7KQ2M9XD3FHT0W5RW")
    await timed("flash", rate, driver.write_file(where, image))
    counted = flash_wire_bytes(image, prod.nvs.offset)
    if counted != phases["flash"].bytes:
        print(f"  (flash: counted {counted} bytes, the simulator saw "
              f"{phases['flash'].bytes})")
    phases["flash"].bytes = counted
    before = await chips.wire_bytes(index)
    took = await driver._call(lambda: round_trip(driver._link.ready()))
    phases["a round trip"] = Phase(took, (await chips.wire_bytes(index) - before) // ROUND_TRIPS,
                                   rate)
    await timed("MD5 + read-back", rate, driver.verify_file(where, image))
    await timed("4 cert files", rate, certificate_files(driver))
    return phases


def pem(kind: str, size: int) -> bytes:
    body = b"A" * size
    lines = b"\n".join(body[i:i + 64] for i in range(0, size, 64))
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (kind.encode(), lines, kind.encode())


# A pre-claimed unit's files at their usual sizes: an EC P-256 key, its certificate, a CA
# chain of two, provision.json5.
CERT_FILES = (("device.key", pem("PRIVATE KEY", 184)), ("device.crt", pem("CERTIFICATE", 680)),
              ("ca.crt", pem("CERTIFICATE", 1300)), ("provision.json5", b"{%s}\n" % (b" " * 220)))


async def certificate_files(driver: EsptoolDriver) -> None:
    """The certificate step's writes: each file an entry of the partition's cert_namespace,
    the partition read back, rebuilt, flashed and verified."""
    for name, data in CERT_FILES:
        await driver.write_file(name, data)
        await driver.verify_file(name, data)


ROUND_TRIPS = 20


def round_trip(esp: Any) -> float:
    """The median time of the smallest command (READ_REG) and its answer, in esptool's own
    thread: the fixed cost every command pays on top of its bytes' wire time."""
    times = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        esp.read_reg(esp.CHIP_DETECT_MAGIC_REG_ADDR)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def provision_at(journal: Journal, path: str, flash_baud: int) -> None:
    """Provision the chip waiting on `path` (a unit of a farm process) as a fixture does."""
    fixture = Fixture(name="bench", port=path, driver="esptool", product=product().id,
                      esptool=settings(flash_baud))
    driver = EsptoolDriver(path, ROM_BAUD, fixture.esptool)
    if not await driver.present():
        raise RuntimeError(f"no chip on {path}")
    await Pipeline(journal).provision(UnitRun(fixture=fixture.name, product=product(),
                                              device_path=""), driver)


async def farm(count: int, root: Path) -> int:
    """`--farm`: `count` simulated chips in this process, one pty each; prints their paths
    as one JSON line, answers a chip's index on stdin with the bytes it has received and
    sent, and serves them until stdin closes."""
    units = []
    for _ in range(count):
        mac = new_mac()
        sim = SimPty(baud=ROM_BAUD)
        units.append((sim, asyncio.create_task(
            run_esp_unit(sim, root / mac.hex(), CHIPS["esp32c3"], mac))))
    print(json.dumps([sim.path for sim, _ in units]), flush=True)
    cpu = time.process_time()
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        sim = units[int(line)][0]
        print(json.dumps(sim.received + sim.sent), flush=True)
    print(json.dumps(time.process_time() - cpu), flush=True)  # CPU while serving
    for sim, task in units:
        sim.hangup()
        await asyncio.gather(task, return_exceptions=True)
    return 0


async def start_farm(count: int, root: Path) -> Farm:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--farm", str(count), "--root", str(root),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    return Farm(proc, json.loads(await proc.stdout.readline()))


@dataclass
class Throughput:
    per_minute: float
    station_cpu: float  # CPU seconds per unit: the station (esptool's threads and the loop)
    chips_cpu: float  # and the simulated chips' processes while they served


async def fixtures_per_minute(journal: Journal, fixtures: int, units: int, flash_baud: int,
                              root: Path) -> Throughput:
    """Units per minute through `fixtures` fixtures side by side, `units` each in a row."""
    farms = [await start_farm(units, root / f"farm{i}") for i in range(fixtures)]
    chips_cpu = 0.0
    try:
        started, cpu = time.perf_counter(), time.process_time()

        async def line(paths: list[str]) -> None:
            for path in paths:
                await provision_at(journal, path, flash_baud)

        await asyncio.gather(*(line(f.paths) for f in farms))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        for f in farms:
            chips_cpu += await f.stop()
    count = fixtures * units
    return Throughput(count / elapsed * 60, cpu / count, chips_cpu / count)


def peer_units_per_minute(boards: int) -> float | None:
    """The RainMaker CLI's own flow, one board at a time (scripts/rainmaker_cli_flow.py, the
    CLI in tests/rainmaker_cli/.venv as scripts/test installs it); None when it cannot run."""
    import rainmaker_cli_flow  # scripts/ is this script's own folder, first on sys.path

    try:
        return rainmaker_cli_flow.units_per_minute(boards, baud=ROM_BAUD)
    except (rainmaker_cli_flow.CliMissing, RuntimeError) as exc:
        print(f"peer: the RainMaker CLI's flow did not run: {exc}")
        return None


def peer_line(ours_per_min: float, peer_per_min: float | None) -> str:
    """The peer baseline: the RainMaker CLI's own flow (MAC read, claim, NVS build, flash),
    one board at a time, measured by scripts/rainmaker_cli_flow.py against the same
    simulated chips; eight fixtures' units/min against it (target: at least 8x)."""
    if peer_per_min is None:
        return ("peer: not measured here; run scripts/rainmaker_cli_flow.py and pass its "
                "units/min as --peer-units-per-min")
    return (f"peer: RainMaker CLI {peer_per_min:,.1f} units/min; 8 fixtures "
            f"{ours_per_min:,.1f} units/min = {ours_per_min / peer_per_min:.2f}x "
            "(target >= 8x)")


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-esp-") as tmp:
        work = Path(tmp)
        journal = await open_journal(work / "journal.sqlite", "bench")
        try:
            print("one ESP32-C3 (simulated ROM bootloader, paced both ways; the ROM starts at "
                  f"{ROM_BAUD}), median of {args.rounds} units")
            print(f"{'flash baud':>10}  {'phase':<16} {'bytes':>7} {'limit ms':>9} "
                  f"{'median ms':>10} {'ratio':>6} {'best ms':>8} {'ratio':>6}")
            for flash_baud in (115200, 921600):
                chips = await start_farm(args.rounds, work / f"u{flash_baud}")
                try:
                    runs = [await one_unit(chips, i, flash_baud) for i in range(args.rounds)]
                finally:
                    await chips.stop()
                for name in runs[0]:
                    phase = runs[0][name]
                    took = statistics.median(r[name].seconds for r in runs)
                    best = min(r[name].seconds for r in runs)
                    limit = wire_seconds(phase.bytes, phase.baud)
                    print(f"{flash_baud:>10}  {name:<16} {phase.bytes:>7,} "
                          f"{limit * 1000:>9.1f} {took * 1000:>10.1f} {took / limit:>5.2f}x "
                          f"{best * 1000:>8.1f} {best / limit:>5.2f}x")
            print("(flash: the compressed NVS image with its framing, counted from the "
                  "protocol; target <= 1.5x. It takes 3 round trips (begin, the block, end), "
                  "each paying the fixed cost of one READ_REG's round trip on top of its "
                  "bytes. The stub goes at the ROM's rate, as esptool sends it; the rest at "
                  "the flash baud. 4 cert files: a pre-claimed product's, each a read of the "
                  "whole partition, the rebuilt image flashed, its MD5 and read-back.)\n")

            units = args.fixture_units
            print(f"fixtures at 921600 baud, {units} fresh chips each in a row "
                  f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start)")
            one = await fixtures_per_minute(journal, 1, units, 921600, work / "one")
            eight = await fixtures_per_minute(journal, 8, units, 921600, work / "eight")
            for name, t in (("1 fixture", one), ("8 fixtures", eight)):
                print(f"  {name:<10} {t.per_minute:7,.1f} units/min; CPU s/unit: station "
                      f"{t.station_cpu:.3f}, chips {t.chips_cpu:.3f}")
            print(f"  8 fixtures = {eight.per_minute / one.per_minute:.2f}x 1 fixture "
                  "(target >= 7x)")
            peer = args.peer_units_per_min
            if peer is None and args.peer_boards:
                peer = await asyncio.to_thread(peer_units_per_minute, args.peer_boards)
            print(peer_line(eight.per_minute, peer))
            result = await journal.verify()
            print(f"\njournal: {result.checked} events, chain "
                  f"{'intact' if result.ok else 'BROKEN: ' + result.reason}")
            return 0 if result.ok else 1
        finally:
            await journal.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--farm", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5, help="units per single-unit figure")
    parser.add_argument("--fixture-units", type=int, default=4,
                        help="units per fixture in the 1-vs-8 comparison")
    parser.add_argument("--peer-boards", type=int, default=3, metavar="N",
                        help="boards through the RainMaker CLI's flow (0: skip)")
    parser.add_argument("--peer-units-per-min", type=float, metavar="N",
                        help="the RainMaker CLI's units/min from scripts/rainmaker_cli_flow.py")
    parsed = parser.parse_args()
    if parsed.farm:
        sys.exit(asyncio.run(farm(parsed.farm, parsed.root)))
    sys.exit(asyncio.run(main(parsed)))
