"""Graceful shutdown of a real station process: SIGTERM mid-provision of a simulated unit.
The unit finishes within its grace, or (a second signal) is abandoned with an `interrupted`
event; either way the station exits 0, and a restart completes the unit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest

from tests.conftest import CONFIG_TEXT, FACTORY, PRODUCT, ROOT, run_cli, write_config
from tests.test_durability import station_process

pytestmark = pytest.mark.slow
MAC = "02:00:00:00:00:77"


def station_config(tmp_path: Path, link: Path) -> Path:
    return write_config(tmp_path, CONFIG_TEXT + f"""
[[fixtures]]
name = "line-1"
port = "{link.name}"
driver = "console"
product = "{PRODUCT}"
poll_interval = 0.1

[fixtures.console]
identify_command = "cat sys/class/net/eth0/address"
""")


@asynccontextmanager
async def slow_unit(tmp_path: Path, link: Path) -> AsyncIterator[None]:
    """A console unit at 2400 baud: its device file takes seconds to write."""
    sim = await asyncio.create_subprocess_exec(
        *FACTORY, "sim-unit", "--driver", "console", "--root", str(tmp_path / "unit"),
        "--link", str(link), "--hardware-id", MAC, "--baud", "2400",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert sim.stdout is not None
        assert (await sim.stdout.readline()).startswith(b"/dev/pts/")
        yield
    finally:
        sim.terminate()
        await sim.wait()


def kinds(journal: Path) -> list[str]:
    """The kinds of the journal's events, oldest first (read beside the running station)."""
    if not journal.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            return [kind for (kind,) in db.execute("SELECT kind FROM events ORDER BY seq")]
    except sqlite3.OperationalError:  # made a moment ago, its tables not yet there
        return []


async def until_kind(journal: Path, kind: str, seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):
        while kind not in kinds(journal):
            await asyncio.sleep(0.05)


async def stop(proc: asyncio.subprocess.Process, signals: int) -> int:
    """SIGTERM `signals` times; the exit status, which must come within 20 s."""
    for _ in range(signals):
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
    async with asyncio.timeout(20):
        return await proc.wait()


async def test_sigterm_mid_write_lets_the_unit_finish(tmp_path: Path) -> None:
    link = tmp_path / "unit.tty"
    config = station_config(tmp_path, link)
    journal = tmp_path / "journal.sqlite"
    async with slow_unit(tmp_path, link), station_process(config) as (proc, _):
        await until_kind(journal, "issued")
        assert "written" not in kinds(journal)  # mid-write when the signal comes
        assert await stop(proc, 1) == 0
    assert kinds(journal) == ["issued", "written", "verified"]
    run_cli(config, "journal", "verify")


async def test_a_second_sigterm_abandons_the_unit_and_a_restart_completes_it(
        tmp_path: Path) -> None:
    link = tmp_path / "unit.tty"
    config = station_config(tmp_path, link)
    journal = tmp_path / "journal.sqlite"
    async with slow_unit(tmp_path, link):
        async with station_process(config) as (proc, _):
            await until_kind(journal, "issued")
            assert await stop(proc, 2) == 0
        assert kinds(journal) == ["issued", "interrupted"]
        async with station_process(config) as (proc, _):
            await until_kind(journal, "verified")
            assert await stop(proc, 1) == 0
    assert kinds(journal) == ["issued", "interrupted", "written", "verified"]
    units = json.loads(run_cli(config, "units", "--json").stdout)
    assert len(units) == 1 and units[0]["state"] == "verified"  # the same UCI, resumed
    events = json.loads(run_cli(config, "unit", units[0]["uci"], "--json").stdout)["events"]
    interrupted = next(e for e in events if e["kind"] == "interrupted")
    assert interrupted["data"]["step"] == "writing"
    run_cli(config, "journal", "verify")


# The safety net, in a process of its own (it ends it): a stop that hangs in the event loop,
# or in a thread that outlives serving, ends the process with EXIT_STUCK and a line naming it.
STUCK_TASK = """
import asyncio, logging
from factory.station import StopDeadline
logging.basicConfig(level=logging.INFO)
async def main():
    deadline = StopDeadline()
    deadline.arm(0.3)
    await asyncio.create_task(asyncio.Event().wait(), name="stuck-part")
asyncio.run(main())
"""
LINGERING_THREAD = """
import asyncio, logging, threading
from factory.station import StopDeadline
logging.basicConfig(level=logging.INFO)
async def main():
    StopDeadline().arm(0.3)
threading.Thread(target=threading.Event().wait, name="left-behind").start()
asyncio.run(main())
"""


@pytest.mark.parametrize(("script", "named"), [(STUCK_TASK, "task stuck-part at "),
                                               (LINGERING_THREAD, "thread left-behind at ")])
async def test_a_stop_that_hangs_ends_the_process_and_names_what_hung(
        script: str, named: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *FACTORY[:1], "-c", script, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    assert proc.returncode == 70, err
    line = err.decode()
    assert named in line
    assert line.count("\n") == 1 and "stopping took over 0.3 s" in line  # one line
