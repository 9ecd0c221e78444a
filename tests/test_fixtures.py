"""Fixtures end to end: simulated units on real pseudo-terminals, the real journal, files on
disk. Units come and go; one fixture's trouble never stops another."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import stat
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import json5
import pytest

from factory.config import DriverName, Fixture, StationConfig
from factory.config.drivers import ConsoleSettings
from factory.journal.interface import Journal
from factory.testbed.sim.console import run_console_unit
from factory.testbed.sim.framed import run_framed_unit
from factory.testbed.sim.pty import Misbehaviour, SimPty
from factory.units.driver import Identity
from factory.units.fixture import FixtureRunner
from factory.units.port import open_port
from tests.conftest import FACTORY, PRODUCT, ROOT

pytestmark = pytest.mark.slow
DEVICE = "config/device.json5"


@dataclasses.dataclass
class Unit:
    sim: SimPty
    root: Path
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def plugged(link: Path, root: Path, mac: str, misbehaviour: Misbehaviour | None = None,
                  driver: str = "framed") -> AsyncIterator[Unit]:
    """A simulated unit on a new pty, reachable at `link` while plugged in."""
    sim = SimPty(baud=None, misbehaviour=misbehaviour)
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(sim.path)
    if driver == "framed":
        unit = run_framed_unit(sim, root, Identity(hardware_id=mac, model="SIM-1"))
    else:
        unit = run_console_unit(sim, root, mac)
    task = asyncio.create_task(unit)
    try:
        yield Unit(sim, root, task)
    finally:
        sim.hangup()
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def running(config: StationConfig, journal: Journal, name: str, port: Path,
                  driver: DriverName = "framed") -> AsyncIterator[FixtureRunner]:
    """A fixture on `port` running in the background, as `factory serve` runs it."""
    spec = Fixture(name=name, port=str(port), driver=driver, product=PRODUCT,
                   device_path=DEVICE, poll_interval=0.05,
                   console=ConsoleSettings(identify_command="cat sys/class/net/eth0/address"))
    product = config.product(PRODUCT)
    assert product is not None
    runner = FixtureRunner(spec, product, journal)
    task = asyncio.create_task(runner.run_forever())
    try:
        yield runner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(check: Callable[[], Coroutine[Any, Any, bool]], seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.02)


def read_device(root: Path) -> dict[str, Any]:
    path = root / DEVICE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return json5.loads(path.read_text())


async def verified(journal: Journal) -> dict[str, str]:
    units, _ = await journal.units(state="verified", limit=1000)
    return {u.hardware_id or "": u.uci for u in units}


@pytest.mark.parametrize("driver", ["framed", "console"])
async def test_units_come_and_go_on_one_fixture(tmp_path: Path, config: StationConfig,
                                                journal: Journal, driver: DriverName) -> None:
    link = tmp_path / "ttyFIX1"
    async with running(config, journal, "f1", link, driver) as runner:
        for mac in ("02:00:00:00:00:01", "02:00:00:00:00:02"):
            root = tmp_path / mac.replace(":", "")
            async with plugged(link, root, mac, driver=driver):
                await until(lambda m=mac: has_verified(journal, m))  # type: ignore[misc]
            device = read_device(root)
            assert device["id"] == (await verified(journal))[hw(mac)]
            assert device["product"] == PRODUCT
        assert runner.status.done == 2
    assert (await journal.verify()).ok


def hw(mac: str) -> str:
    return mac.replace(":", "").upper()


async def has_verified(journal: Journal, mac: str) -> bool:
    return hw(mac) in await verified(journal)


async def test_a_failed_unit_replugged_completes_with_the_same_uci(
        tmp_path: Path, config: StationConfig, journal: Journal) -> None:
    link = tmp_path / "ttyFIX1"
    mac = "02:00:00:00:00:07"
    async with running(config, journal, "f1", link) as runner:
        # Unplugged mid-write: the unit got its UCI, then the line went dead.
        async with plugged(link, tmp_path / "u", mac, Misbehaviour(hangup_after_bytes=120)):
            await until(lambda: _state(journal, "failed"))
        assert runner.status.failed == 1
        failed, _ = await journal.units(state="failed")
        async with plugged(link, tmp_path / "u", mac):
            await until(lambda: has_verified(journal, mac))
            # The journal shows `verified` once committed; the fixture hears it once it is
            # anchored too: unplugging in between would interrupt the step after its event.
            await until(lambda: _done(runner, 1))
    assert (await verified(journal))[hw(mac)] == failed[0].uci
    events = [e.kind for e in (await journal.unit(failed[0].uci)).events]
    assert events[0] == "issued" and "failed" in events and events[-1] == "verified"
    assert read_device(tmp_path / "u")["id"] == failed[0].uci


async def _state(journal: Journal, state: str) -> bool:
    return bool((await journal.units(state=state))[0])


async def test_a_busy_port_is_reported_once_and_retried(tmp_path: Path, config: StationConfig,
                                                        journal: Journal) -> None:
    link = tmp_path / "ttyFIX1"
    mac = "02:00:00:00:00:08"
    async with plugged(link, tmp_path / "u", mac):
        other = await open_port(str(link), 115200)  # another program holds the port
        async with running(config, journal, "f1", link) as runner:
            await until(lambda: _noted(journal, "fixture_port_error"))
            await asyncio.sleep(0.3)  # several retries happen meanwhile
            assert runner.status.state == "port-error"
            assert "held by another program" in runner.status.reason
            notes = [e async for e in journal.events() if e.kind == "fixture_port_error"]
            assert len(notes) == 1 and notes[0].actor == "fixture:f1"
            await other.close()
            await until(lambda: has_verified(journal, mac))


async def _done(runner: FixtureRunner, count: int) -> bool:
    return runner.status.done >= count


async def _noted(journal: Journal, kind: str) -> bool:
    return any([e async for e in journal.events() if e.kind == kind])


async def test_eight_fixtures_at_once_and_a_bad_one_stops_none(
        tmp_path: Path, config: StationConfig, journal: Journal) -> None:
    async with contextlib.AsyncExitStack() as stack:
        runners = []
        for i in range(8):
            link = tmp_path / f"ttyFIX{i}"
            bad = Misbehaviour(silent=True) if i == 3 else None
            await stack.enter_async_context(
                plugged(link, tmp_path / f"u{i}", f"02:00:00:00:01:{i:02x}", bad))
            runners.append(await stack.enter_async_context(
                running(config, journal, f"f{i}", link)))
        good = [f"02:00:00:00:01:{i:02x}" for i in range(8) if i != 3]
        await until(lambda: _all_verified(journal, good), 20)
        for runner in runners[:3] + runners[4:]:
            await until(partial(_done, runner, 1))  # each fixture heard its unit done
        assert runners[3].status.state == "waiting"  # a silent unit is never taken for one
        assert all(r.status.done == 1 for i, r in enumerate(runners) if i != 3)
    assert len(await verified(journal)) == 7


async def _all_verified(journal: Journal, macs: list[str]) -> bool:
    done = await verified(journal)
    return all(hw(m) in done for m in macs)


@pytest.mark.parametrize("driver", ["framed", "console"])
def test_provision_command_with_a_simulated_unit(tmp_path: Path, config_path: Path,
                                                 driver: str) -> None:
    """The CLI path behaves like a fixture: with the console driver's default identify
    command the simulated unit answers its own MAC, not the host's (issue 17, part 4)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    link = tmp_path / "ttySIM"
    with subprocess.Popen([*FACTORY, "sim-unit", "--driver", driver, "--root",
                           str(tmp_path / "unit"), "--link", str(link), "--baud", "0",
                           "--hardware-id", "02:00:00:00:00:99"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env=env) as sim:
        try:
            assert sim.stdout is not None
            first = sim.stdout.readline()
            assert first.startswith("/dev/pts/") and str(link) in first
            result = subprocess.run([*FACTORY, "-c", str(config_path), "provision", "--port",
                                     str(link), "--driver", driver, "--product", PRODUCT],
                                    capture_output=True, text=True, env=env, timeout=60,
                                    check=False)
        finally:
            sim.terminate()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("identifying", "issuing", "writing", "verifying", "done: unit"):
        assert step in out
    device = read_device(tmp_path / "unit")
    assert device["id"] in out
    shown = subprocess.run([*FACTORY, "-c", str(config_path), "unit", device["id"], "--json"],
                           capture_output=True, text=True, env=env, check=True)
    unit = json.loads(shown.stdout)
    assert unit["state"] == "verified"
    assert unit["hardware_id"] == "020000000099"  # the unit's own, whatever the driver


async def test_serve_runs_the_configured_fixtures(tmp_path: Path) -> None:
    """`factory serve` with a [[fixtures]] table provisions the unit plugged into it."""
    from tests.conftest import CONFIG_TEXT, run_cli, write_config
    from tests.test_durability import station_process

    link = tmp_path / "unit.tty"
    config = write_config(tmp_path, CONFIG_TEXT + f"""
[[fixtures]]
name = "line-1"
port = "{link.name}"
driver = "console"
product = "{PRODUCT}"

[fixtures.console]
identify_command = "cat sys/class/net/eth0/address"
""")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sim = await asyncio.create_subprocess_exec(
        *FACTORY, "sim-unit", "--driver", "console", "--root", str(tmp_path / "unit"),
        "--link", str(link), "--hardware-id", "02:00:00:00:00:42", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert sim.stdout is not None
        assert (await sim.stdout.readline()).startswith(b"/dev/pts/")
        async with station_process(config):
            async with asyncio.timeout(20):
                while not (tmp_path / "unit" / DEVICE).exists():
                    await asyncio.sleep(0.05)
            uci = read_device(tmp_path / "unit")["id"]
            async with asyncio.timeout(20):
                while '"verified"' not in run_cli(config, "unit", uci, "--json").stdout:
                    await asyncio.sleep(0.1)
    finally:
        sim.terminate()
        await sim.wait()
    shown = json.loads(run_cli(config, "unit", uci, "--json").stdout)
    assert [e["kind"] for e in shown["events"]] == ["issued", "written", "verified"]
    assert shown["events"][0]["actor"] == "fixture:line-1"


async def test_a_broken_unit_left_in_the_fixture_is_journaled_once(
        tmp_path: Path, config: StationConfig, journal: Journal) -> None:
    link = tmp_path / "ttyFIX1"
    async with running(config, journal, "f1", link) as runner, \
            plugged(link, tmp_path / "u", "not a mac; rm -rf /"):
        await until(lambda: _noted(journal, "fixture_failed"))
        await asyncio.sleep(1.0)  # twenty polls: the unit is still there, still broken
        failures = [e async for e in journal.events() if e.kind == "fixture_failed"]
        assert len(failures) == 1 and runner.status.failed == 1
        assert "identity is unusable" in failures[0].data["reason"]


async def test_arriving_units_take_their_link_away_before_their_pty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A link left on a closed pty may point at a pty number the kernel has given to another
    # program by the time a fixture opens it.
    import argparse

    from factory.testbed.sim import run as sim_run

    link = tmp_path / "unit.tty"
    linked_at_hangup: list[bool] = []
    made: list[SimPty] = []

    class Recording(SimPty):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            made.append(self)

        def hangup(self) -> None:
            linked_at_hangup.append(os.path.lexists(link))
            super().hangup()

    monkeypatch.setattr(sim_run, "SimPty", Recording)
    args = argparse.Namespace(
        arrive_every=0.1, link=link, root=tmp_path / "units", hardware_id="02:00:00:00:00:01",
        baud=0, driver="framed", model="SIM-1", no_keygen=False, silent=False, garbage=False,
        drop_rate=0.0, corrupt_next=0, hangup_after=None, corrupt_storage=False)
    task = asyncio.create_task(sim_run.run_sim_unit(args))
    while len(linked_at_hangup) < 3:
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    made[-1].hangup()  # the unit in the fixture when we stopped
    assert linked_at_hangup[:3] == [False, False, False]
