"""The whole line for crash tests: a real `factory serve` (killed and restarted), the reference
registry, a private CUPS queue to a socket "printer", simulated units on pseudo-terminals in two
fixtures (a console unit of a user-claimed product, a framed unit of a pre-claimed one) and an
API client issuing UCIs. Everything a client, unit, label or upstream ever received is kept
here, outside the station, so `check` can hold the station's journal to it.

Used by tests/crash/test_crash.py (a few dozen kill points) and scripts/crash_campaign.py
(thousands).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import json5

from factory import uci as uci_codec
from factory.hardware import normalise
from factory.station import STOP_LIMIT
from factory.testbed.registry.keys import STORE
from factory.testbed.sim.console import run_console_unit
from factory.testbed.sim.framed import run_framed_unit
from factory.testbed.sim.pty import SimPty
from factory.units.driver import Identity
from tests.conftest import FACTORY, OTHER_PRODUCT, PRODUCT, ROOT, run_cli
from tests.cups import PrivateCups, private_cups
from tests.test_outbox import Registry

ACCOUNT = "acme-retail"
DEVICE = "config/device.json5"
HUMAN_UCI = re.compile(r"\b[0-9A-Z]{4}(?:-[0-9A-Z]{4}){3}-[0-9A-Z*~$=]")
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)/")
# What each fixture's unit has when the fixture is done with it.
DONE_KIND = {"console-1": "labelled", "framed-1": "certificate_written"}
DRIVER = {"console-1": "console", "framed-1": "framed"}


def station_toml(folder: Path, cups: PrivateCups, registry: Registry) -> str:
    return f"""
[station]
id = "crash-line"
listen = "127.0.0.1:0"
journal = "journal.sqlite"
labels = "{ROOT}/labels"

[printer]
queue = "{cups.queue}"
server = "{cups.server}"
keep = "labels"

[upstream]
kind = "http"
url = "{registry.url}"
token_file = "registry.token"
concurrency = 4
timeout = 5

[ioto]
networks = ["127.0.0.0/8"]

[[products]]
id = "{PRODUCT}"
name = "Acme Air Sensor"
model = "AQ-100"
label = "thermal-50x30"
qr = "https://claim.example.com/c/{{uci}}"

[[products]]
id = "{OTHER_PRODUCT}"
name = "Acme Hub"
model = "HUB-2"
claim = "pre"
account = "{ACCOUNT}"
preclaim_wait = 15
label = "thermal-50x30"
qr = "https://claim.example.com/c/{{uci}}"

[[fixtures]]
name = "console-1"
port = "{folder}/console-1.tty"
driver = "console"
product = "{PRODUCT}"
device_path = "{DEVICE}"
poll_interval = 0.05

[fixtures.console]
identify_command = "cat sys/class/net/eth0/address"

[[fixtures]]
name = "framed-1"
port = "{folder}/framed-1.tty"
driver = "framed"
product = "{OTHER_PRODUCT}"
device_path = "{DEVICE}"
poll_interval = 0.05
"""


@dataclasses.dataclass
class Plugged:
    """A simulated unit in a fixture: its identity, its storage, its pty."""

    fixture: str
    mac: str
    root: Path
    sim: SimPty
    task: asyncio.Task[None]


@dataclasses.dataclass
class Round:
    """One start of the station: how it ended."""

    failpoints: str
    ended: str = ""  # "failpoint", "timer" (killed from outside), "finished"
    log: str = ""


class Line:
    """The line around a station that is killed and restarted; see the module docstring."""

    def __init__(self, folder: Path, cups: PrivateCups, registry: Registry) -> None:
        self.folder, self.cups, self.registry = folder, cups, registry
        self.quota = 0  # units each fixture gets in all: each round adds one
        self.config = folder / "station.toml"
        self.journal = folder / "journal.sqlite"
        self.plugged: dict[str, Plugged | None] = {name: None for name in DONE_KIND}
        self.units: list[Plugged] = []  # every unit ever plugged in
        self.received: list[str] = []  # UCIs the API client was given
        self.refused: list[str] = []  # answers other than 200/201 (there should be none)
        self.rounds: list[Round] = []
        self._macs = Counter[str]()
        self.token = ""

    async def setup(self) -> None:
        assert self.registry.server is not None
        await self.registry.server.app[STORE].add_token("account", ACCOUNT,
                                                        "2026-11-23T00:00:00Z")
        (self.folder / "registry.token").write_text(self.registry.token)
        self.config.write_text(station_toml(self.folder, self.cups, self.registry))
        self.token = run_cli(self.config, "token", "new", "--role", "device",
                             "--name", "crash-api").stdout.strip()

    # -- units ------------------------------------------------------------------------------

    def _plug(self, fixture: str) -> Plugged:
        self._macs[fixture] += 1
        n = self._macs[fixture]
        mac = f"02:c0:{list(DONE_KIND).index(fixture):02x}:00:{n // 256:02x}:{n % 256:02x}"
        root = self.folder / "units" / f"{fixture}-{n:03d}"
        root.mkdir(parents=True)
        sim = SimPty(baud=None)
        link = self.folder / f"{fixture}.tty"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(sim.path)
        if DRIVER[fixture] == "framed":
            coro = run_framed_unit(sim, root, Identity(hardware_id=mac, model="HUB-2",
                                                       firmware="sim-1.0"))
        else:
            coro = run_console_unit(sim, root, mac)
        unit = Plugged(fixture, mac, root, sim, asyncio.create_task(coro))
        self.units.append(unit)
        self.plugged[fixture] = unit
        return unit

    async def _unplug(self, fixture: str) -> None:
        unit = self.plugged[fixture]
        if unit is None:
            return
        self.plugged[fixture] = None
        # The link first: once the pty is closed its number may go to another program.
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"{fixture}.tty").unlink()
        unit.sim.hangup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(unit.task, 5)

    def done(self, unit: Plugged) -> bool:
        """Whether the station finished with the unit (by the journal)."""
        kinds = self.kinds_for_hardware(unit.mac)
        return DONE_KIND[unit.fixture] in kinds

    def kinds_for_hardware(self, mac: str) -> list[str]:
        with self._db() as db:
            rows = db.execute("SELECT e.kind FROM events AS e JOIN units AS u ON u.id ="
                              " e.unit_id WHERE u.hardware_id = ? ORDER BY e.seq",
                              (normalise(mac),)).fetchall()
        return [kind for (kind,) in rows]

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=10)
        try:
            yield db
        finally:
            db.close()

    async def _feed(self) -> None:
        """Keep a unit in each fixture: the next one once the station is done with the last."""
        for fixture in DONE_KIND:
            if self.plugged[fixture] is None and self._macs[fixture] < self.quota:
                self._plug(fixture)
        while True:
            await asyncio.sleep(0.1)
            for fixture, unit in self.plugged.items():
                if unit is None or not await asyncio.to_thread(self.done, unit):
                    continue
                await self._unplug(fixture)
                if self._macs[fixture] < self.quota:
                    self._plug(fixture)

    def all_done(self) -> bool:
        return all(v is None for v in self.plugged.values()) and all(
            self._macs[f] >= self.quota for f in DONE_KIND)

    # -- the API client ---------------------------------------------------------------------

    async def _issue(self, url: str) -> None:
        """Issue a UCI now and then (single, or a batch of 3), as a line's other clients do."""
        n = 0
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.token}"}) as session:
            while True:
                n += 1
                body: dict[str, Any] = {"product": PRODUCT}
                if n % 4 == 0:
                    body["count"] = 3
                try:
                    async with session.post(f"{url}/api/v1/ucis", json=body) as resp:
                        if resp.status in (200, 201):
                            data = await resp.json()
                            self.received.extend(data.get("ucis") or [data["uci"]])
                        else:
                            self.refused.append(f"{resp.status}: {await resp.text()}")
                except (aiohttp.ClientError, TimeoutError):
                    return  # the station died: what we were told is what counts
                await asyncio.sleep(0.05)

    # -- the station ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _station(self, failpoints: str) -> AsyncIterator[
            tuple[asyncio.subprocess.Process, str, list[str]]]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FACTORY_FAILPOINTS": failpoints}
        proc = await asyncio.create_subprocess_exec(
            *FACTORY, "-c", str(self.config), "serve", "--no-access-log", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        log: list[str] = []

        async def read() -> None:
            assert proc.stderr is not None
            async for line in proc.stderr:
                log.append(line.decode(errors="replace"))

        reader = asyncio.create_task(read())
        try:
            async with asyncio.timeout(30):
                while not any(LISTENING.search(line) for line in log):
                    if proc.returncode is not None or reader.done():
                        break
                    await asyncio.sleep(0.02)
            match = next((m for line in log if (m := LISTENING.search(line))), None)
            yield proc, (f"http://{match[1]}:{match[2]}" if match else ""), log
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            try:  # a child the station left behind may hold its stderr open
                async with asyncio.timeout(10):
                    await reader
            except TimeoutError:
                reader.cancel()
                log.append("(the station's stderr stayed open 10 s after it exited)\n")

    async def run(self, failpoints: str = "", kill_after: float | None = None,
                  limit: float = 60.0, new_units: int = 1) -> Round:
        """Start the station with `new_units` more units for each fixture and feed it until
        a failpoint kills it, `kill_after` seconds pass (then SIGKILL from outside), or every
        unit is done and nothing is owed (then SIGTERM: the failpoint was not reached)."""
        self.quota += new_units
        result = Round(failpoints)
        async with self._station(failpoints) as (proc, url, log):
            tasks = [asyncio.create_task(self._feed())]
            if url:
                tasks.append(asyncio.create_task(self._issue(url)))
            waiter = asyncio.create_task(proc.wait())
            try:
                deadline = asyncio.get_running_loop().time() + (
                    kill_after if kill_after is not None else limit)
                while not waiter.done():
                    await asyncio.sleep(0.05)
                    now = asyncio.get_running_loop().time()
                    if now >= deadline:
                        if kill_after is None:
                            raise AssertionError(
                                f"the line did not finish in {limit:g} s: "
                                f"{self.progress()}\n{''.join(log[-40:])}")
                        proc.send_signal(signal.SIGKILL)
                        result.ended = "timer"
                        break
                    if kill_after is None and self.all_done() and \
                            await asyncio.to_thread(self.settled):
                        proc.send_signal(signal.SIGTERM)
                        result.ended = "not reached" if failpoints else "finished"
                        break
                try:  # the station's own limit (STOP_LIMIT) ends a stop that hangs
                    async with asyncio.timeout(STOP_LIMIT + 10):
                        await proc.wait()
                except TimeoutError:
                    raise AssertionError(f"the station did not exit {STOP_LIMIT + 10:g} s after "
                                         f"{result.ended}:\n{''.join(log[-40:])}") from None
                if result.ended in ("not reached", "finished") and proc.returncode != 0:
                    raise AssertionError(f"the station stopped with exit {proc.returncode}:\n"
                                         f"{''.join(log[-40:])}")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                waiter.cancel()
        result.log = "".join(log)
        if not result.ended:
            result.ended = "failpoint" if "failpoint " in result.log else f"exit {proc.returncode}"
        self.rounds.append(result)
        return result

    def settled(self) -> bool:
        """Nothing owed: no outbox entry pending, no label waiting for the printer."""
        with self._db() as db:
            pending = db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'"
                                 ).fetchone()[0]
            owed = db.execute("SELECT count(*) FROM labels_owed").fetchone()[0]
        return int(pending) == 0 and int(owed) == 0

    def progress(self) -> str:
        states = {u.mac: self.kinds_for_hardware(u.mac)[-1:] for u in self.units}
        return f"plugged {[u.mac if u else None for u in self.plugged.values()]}, {states}"

    async def finish(self, limit: float = 90.0) -> Round:
        """Run the station without failpoints until every unit is done and nothing is owed."""
        result = await self.run(limit=limit, new_units=0)
        for fixture in DONE_KIND:
            await self._unplug(fixture)
        return result

    # -- the invariants ---------------------------------------------------------------------

    def check(self) -> dict[str, str]:
        """Each invariant's name and what broke it ("" when it held)."""
        with self._db() as db:
            units = dict(db.execute("SELECT uci, state FROM units").fetchall())
            issued = [u for (u,) in db.execute("SELECT uci FROM events WHERE kind = 'issued'")]
            by_hardware = db.execute("SELECT hardware_id, uci FROM units WHERE hardware_id"
                                     " IS NOT NULL AND state <> 'voided'").fetchall()
            events = db.execute("SELECT uci, kind, data FROM events ORDER BY seq").fetchall()
        kinds: dict[str, list[str]] = {}
        for uci, kind, _ in events:
            kinds.setdefault(uci, []).append(kind)
        on_units = {normalise(u.mac): self._device_uci(u) for u in self.units}
        labels = self._printed_labels()
        at_registry = self._at_registry()
        hardware = dict(by_hardware)
        result: dict[str, str] = {}

        seen = set(self.received) | {u for u in on_units.values() if u} | set(labels)
        missing = seen - set(units)
        dup = [u for u, n in Counter(issued).items() if n > 1]
        result["every UCI received is journaled, none twice; no request refused"] = (
            f"{len(self.refused)} requests refused: {self.refused[:2]}" if self.refused else
            f"{len(missing)} received but not journaled: {sorted(missing)[:3]}" if missing
            else f"{len(dup)} issued twice: {dup[:3]}" if dup else "")

        wrong = {mac: (uci, hardware.get(mac)) for mac, uci in on_units.items()
                 if uci != hardware.get(mac)}
        result["each unit holds the one UCI journaled for it"] = (
            f"{len(wrong)} units differ (unit, journal): {list(wrong.items())[:3]}"
            if wrong else "")

        verified = {u for u, k in kinds.items() if "verified" in k}
        jobs = Counter(labels)
        bad_labels = {u: jobs[u] for u in verified if jobs[u] != kinds[u].count("labelled")
                      or jobs[u] != 1}
        extra = set(jobs) - verified
        result["every verified unit's label printed exactly once"] = (
            f"{len(bad_labels)} units with the wrong number of labels: "
            f"{list(bad_labels.items())[:3]}" if bad_labels
            else f"labels of unverified units: {sorted(extra)[:3]}" if extra else "")

        upstream_kind = {uci: ("preclaimed" if "key_made" in k else "registered")
                         for uci, k in kinds.items() if uci in verified}
        not_once = {u: kinds[u].count(kind) for u, kind in upstream_kind.items()
                    if kinds[u].count(kind) != 1}
        stray = set(at_registry) - verified
        at_reg_twice = [u for u, n in Counter(at_registry).items() if n > 1]
        unknown = verified - set(at_registry)
        result["every verified unit registered upstream exactly once"] = (
            f"{len(not_once)} units answered != once: {list(not_once.items())[:3]}" if not_once
            else f"not at the registry: {sorted(unknown)[:3]}" if unknown
            else f"at the registry, not verified: {sorted(stray)[:3]}" if stray
            else f"twice at the registry: {at_reg_twice[:3]}" if at_reg_twice else "")

        done = {u.mac for u in self.units if DONE_KIND[u.fixture] in kinds.get(
            hardware.get(normalise(u.mac), ""), [])}
        unfinished = [u.mac for u in self.units if u.mac not in done]
        result["every unit plugged in finished (none dropped)"] = (
            f"{len(unfinished)} units unfinished: {unfinished[:3]}" if unfinished else "")

        verify = run_cli(self.config, "journal", "verify", check=False)
        result["journal verify"] = "" if verify.returncode == 0 else verify.stdout + \
            verify.stderr
        return result

    def _device_uci(self, unit: Plugged) -> str | None:
        path = unit.root / DEVICE
        if not path.exists():
            return None
        return str(json5.loads(path.read_text())["id"])

    def _printed_labels(self) -> list[str]:
        """The UCI on each job the printer received (pdftotext), one entry per job."""
        found = []
        for job in self.cups.device.jobs:
            text = subprocess.run(["pdftotext", "-", "-"], input=job, capture_output=True,
                                  check=True).stdout.decode()
            ucis = {uci_codec.parse(h) for h in HUMAN_UCI.findall(text)}
            assert len(ucis) == 1, f"a printed job shows {len(ucis)} UCIs: {text!r}"
            found.append(ucis.pop())
        return found

    def _at_registry(self) -> list[str]:
        db = sqlite3.connect(self.registry.settings.db)
        try:
            return [u for (u,) in db.execute("SELECT id FROM devices")]
        finally:
            db.close()


@contextlib.asynccontextmanager
async def line_up(folder: Path) -> AsyncIterator[Line]:
    """A line in `folder`: the registry and a private CUPS running, the config written."""
    registry = Registry(folder / "registry.sqlite")
    await registry.start()
    try:
        async with private_cups(folder) as cups:
            line = Line(folder, cups, registry)
            await line.setup()
            yield line
    finally:
        await registry.stop()


def summary(line: Line) -> str:
    """The rounds, for an assertion message."""
    return json.dumps([dataclasses.asdict(r) | {"log": r.log[-2000:]} for r in line.rounds],
                      indent=1)
