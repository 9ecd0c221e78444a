"""Serial chaos: many fixtures at once, each fed simulated units on a seeded random schedule
of faults (unplugged mid-write, garbage, corrupt frames, dropped bytes, a slow line, bad
storage, silence). A unit that did not come out verified is plugged in again, healthy.
`tests/test_faults_serial.py` runs a few dozen units; `scripts/serial_chaos.py` runs many
and prints what happened, per fault kind.

What must hold (`check`): every fixture is still running; every verified unit's device
file is the one the journal says was verified; a failed unit plugged in again completes
with the UCI it had; no hardware gets two UCIs nor a UCI two units; the journal verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from factory.config import DriverName, Fixture, Product
from factory.config.drivers import ConsoleSettings
from factory.journal.interface import Journal
from factory.states import DONE_STATES
from factory.testbed.sim.console import run_console_unit
from factory.testbed.sim.framed import run_framed_unit
from factory.testbed.sim.pty import Misbehaviour, SimPty
from factory.units.driver import Identity
from factory.units.fixture import FixtureRunner

FAULTS = ("healthy", "unplug", "garbage", "corrupt", "drop", "slow", "bad-storage", "silent")
FIRST_OUTCOMES = ("verified", "failed", "unnoticed")  # what a faulty first turn can end in
DEVICE = "config/device.json5"
SETTLE = 12.0  # seconds a unit gets to come out verified or failed
UNNOTICED = 1.5  # seconds a unit that may never be taken for one (silence, garbage) gets


@dataclass(frozen=True)
class Plan:
    """One unit's turn in a fixture: its identity and how it misbehaves the first time."""

    fixture: int
    mac: str
    fault: str
    seed: int

    def misbehaviour(self, driver: DriverName) -> tuple[Misbehaviour, int | None]:
        """The fault as simulator settings, and the line's baud rate (None: unpaced)."""
        rng = random.Random(self.seed)  # noqa: S311 - a test schedule, not a secret
        m = Misbehaviour(rng=random.Random(self.seed + 1))  # noqa: S311
        baud: int | None = None
        if self.fault == "unplug":  # after identifying, somewhere in the file's bytes
            m.hangup_after_bytes = rng.randrange(120, 500 if driver == "framed" else 1500)
        elif self.fault == "garbage":
            m.garbage = True
        elif self.fault == "corrupt":
            m.corrupt_next = rng.randrange(1, 6)
        elif self.fault == "drop":
            m.drop_rate = rng.choice((0.002, 0.01, 0.05))
        elif self.fault == "slow":
            baud = rng.choice((9600, 19200))
        elif self.fault == "bad-storage":
            m.corrupt_storage = True
        elif self.fault == "silent":
            m.silent = True
        return m, baud


@dataclass
class Outcome:
    plan: Plan
    driver: DriverName
    first: str = ""  # verified, failed (has a UCI), refused (no UCI), unnoticed
    uci: str | None = None  # after the faulty turn
    final: str = ""  # verified, or what stopped it
    final_uci: str | None = None
    note: str = ""  # the fixture's state and reason when the faulty turn ended


def schedule(seed: int, fixtures: int, units: int) -> list[list[Plan]]:
    """`units` turns for each of `fixtures`, faults drawn at random (a third healthy)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible on purpose
    weights = [4 if f == "healthy" else 1 for f in FAULTS]
    return [[Plan(f, f"02:{seed % 256:02x}:{f:02x}:{n // 256:02x}:{n % 256:02x}:"
                     f"{rng.randrange(256):02x}",
                  rng.choices(FAULTS, weights)[0], rng.randrange(1 << 30))
             for n in range(units)] for f in range(fixtures)]


def drivers(fixtures: int, console: int) -> list[DriverName]:
    """The fixtures' drivers: framed ones, then `console` console ones (each a real sh)."""
    framed: list[DriverName] = ["framed"] * (fixtures - console)
    return framed + ["console"] * console


def hardware_id(mac: str) -> str:
    return mac.replace(":", "").upper()


@contextlib.asynccontextmanager
async def plugged(link: Path, root: Path, mac: str, driver: DriverName,
                  misbehaviour: Misbehaviour | None = None,
                  baud: int | None = None) -> AsyncIterator[SimPty]:
    """A simulated unit on a new pty, reachable at `link` while plugged in."""
    sim = SimPty(baud=baud, misbehaviour=misbehaviour)
    _relink(link, sim.device)
    if driver == "framed":
        unit = run_framed_unit(sim, root, Identity(hardware_id=mac, model="SIM-1"))
    else:
        unit = run_console_unit(sim, root, mac)
    task = asyncio.create_task(unit)
    try:
        yield sim
    finally:
        sim.hangup()
        _relink(link, None)
        await asyncio.wait_for(task, 10)


def _relink(link: Path, target: str | None) -> None:
    """Point `link` at a pty, or remove it (None): the cable in or out."""
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    if target is not None:
        link.symlink_to(target)


async def _until(holds: Callable[[], bool], seconds: float) -> bool:
    """Poll `holds` for up to `seconds`; whether it came to hold."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                if holds():
                    return True
                await asyncio.sleep(0.02)
    return False


def fixture_spec(name: str, link: Path, driver: DriverName, product: Product) -> Fixture:
    return Fixture(name=name, port=str(link), driver=driver, product=product.id,
                   device_path=DEVICE, poll_interval=0.05,
                   console=ConsoleSettings(identify_command="cat sys/class/net/eth0/address"))


class Line:
    """Fixtures running on one journal, each fed its plans one unit at a time."""

    def __init__(self, journal: Journal, product: Product, folder: Path,
                 drivers: list[DriverName]) -> None:
        self.journal, self.product, self.folder = journal, product, folder
        self.drivers = drivers
        self.runners = [FixtureRunner(fixture_spec(f"chaos-{i}", folder / f"tty{i}", d,
                                                   product), product, journal)
                        for i, d in enumerate(drivers)]
        self.outcomes: list[Outcome] = []
        self._ended = [""] * len(drivers)  # each fixture's state as its last turn ended

    def root(self, plan: Plan) -> Path:
        return self.folder / "units" / hardware_id(plan.mac)

    async def run(self, plans: list[list[Plan]],
                  progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """Feed every fixture its plans at once; returns each unit's outcome."""
        for runner in self.runners:
            runner.start()
        await asyncio.gather(*(self._feed(i, ps, progress) for i, ps in enumerate(plans)))
        return self.outcomes

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.abandon()

    async def _feed(self, index: int, plans: list[Plan],
                    progress: Callable[[Outcome], None] | None) -> None:
        driver = self.drivers[index]
        for plan in plans:
            outcome = Outcome(plan, driver)
            misbehaviour, baud = plan.misbehaviour(driver)
            wait = UNNOTICED if plan.fault in ("silent", "garbage") else SETTLE
            outcome.first, outcome.uci = await self._turn(index, plan, misbehaviour, baud,
                                                          wait)
            outcome.note = self._ended[index]
            if outcome.first == "verified":
                outcome.final, outcome.final_uci = outcome.first, outcome.uci
            else:  # taken out, and plugged in again healthy
                outcome.final, outcome.final_uci = await self._turn(
                    index, plan, Misbehaviour(), None, SETTLE)
            self.outcomes.append(outcome)
            if progress is not None:
                progress(outcome)

    async def _turn(self, index: int, plan: Plan, misbehaviour: Misbehaviour,
                    baud: int | None, wait: float) -> tuple[str, str | None]:
        """Plug the unit in until the fixture is done with it (or `wait` runs out)."""
        runner = self.runners[index]
        status = runner.status
        before = status.done + status.failed
        async with plugged(self.folder / f"tty{index}", self.root(plan), plan.mac,
                           self.drivers[index], misbehaviour, baud):
            await _until(lambda: status.done + status.failed != before, wait)
            ended = f"{status.state}: {status.reason}"
        # Unplugged, the link is gone: the fixture has let go of the unit once it finds no
        # port. A fixture that never does is stuck, which is what must not happen.
        if not await _until(lambda: status.state == "port-error", SETTLE):
            return f"fixture stuck {status.state}", None
        self._ended[index] = ended
        return await self._state(plan)

    async def _state(self, plan: Plan) -> tuple[str, str | None]:
        units = await self.journal.live_units_for_hardware(hardware_id(plan.mac))
        if not units:
            return "unnoticed", None
        unit = units[0]
        return ("verified" if unit.state in DONE_STATES else "failed"), unit.uci


async def check(line: Line) -> list[str]:
    """What did not hold (empty: everything did)."""
    broken: list[str] = []
    journal = line.journal
    for runner in line.runners:
        if runner.task is None or runner.task.done():
            broken.append(f"fixture {runner.fixture.name} stopped")
    by_hardware: dict[str, set[str]] = {}
    for outcome in line.outcomes:
        plan = outcome.plan
        if outcome.final != "verified":
            broken.append(f"{plan.mac} ({plan.fault}) did not complete when plugged in "
                          f"again healthy: {outcome.final}")
        if outcome.uci is not None and outcome.final_uci != outcome.uci:
            broken.append(f"{plan.mac} ({plan.fault}) came back as {outcome.final_uci}, "
                          f"not its UCI {outcome.uci}")
        units = await journal.live_units_for_hardware(hardware_id(plan.mac))
        by_hardware[plan.mac] = {u.uci for u in units}
        if len(units) > 1:
            broken.append(f"{plan.mac} has {len(units)} UCIs")
    ucis = Counter(uci for found in by_hardware.values() for uci in found)
    broken += [f"UCI {uci} is on {n} units" for uci, n in ucis.items() if n > 1]
    issued = Counter([e.uci async for e in journal.events() if e.kind == "issued"])
    broken += [f"UCI {uci} issued {n} times" for uci, n in issued.items() if n > 1]
    for outcome in line.outcomes:
        if outcome.final == "verified" and outcome.final_uci is not None:
            broken += await _device_file_matches(journal, line.root(outcome.plan),
                                                 outcome.final_uci)
    if not (await journal.verify()).ok:
        broken.append("the journal does not verify")
    return broken


async def _device_file_matches(journal: Journal, root: Path, uci: str) -> list[str]:
    """The unit holds the device file its newest `verified` event has the digest of."""
    verified = [e for e in (await journal.unit(uci)).events if e.kind == "verified"]
    if not verified:
        return [f"{uci} is done but was never verified"]
    data = verified[-1].data
    try:
        held = (root / data["path"]).read_bytes()
    except OSError as exc:
        return [f"{uci}: the unit has no device file ({exc})"]
    problems = []
    if data["algorithm"] == "sha256" and hashlib.sha256(held).hexdigest() != data["digest"]:
        problems.append(f"{uci}: the unit's device file is not the one verified")
    if json.loads(held).get("id") != uci:
        problems.append(f"{uci}: the unit's device file names another UCI")
    return problems


def table(outcomes: list[Outcome]) -> list[tuple[str, int, Counter[str]]]:
    """Per fault kind: how many units, and how their first turn went."""
    rows = []
    for fault in FAULTS:
        mine = [o for o in outcomes if o.plan.fault == fault]
        rows.append((fault, len(mine), Counter(o.first for o in mine)))
    return rows
