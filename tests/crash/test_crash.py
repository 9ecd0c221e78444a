"""Crash at every step: the whole line (tests/crash/line.py) with its station SIGKILLed at
named failpoints (factory/failpoints.py) and at random moments, restarted each time, then
held to the invariants: nothing acknowledged is lost, nothing is issued, labelled, printed or
registered twice, and every unit in a fixture is finished."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from factory import failpoints
from factory.labels.making import Label
from factory.units.certificate import InstallCertificate, MakeKey
from factory.units.pipeline import Identify, Issue, Verify, Write
from tests.crash.line import Line, line_up, summary

pytestmark = pytest.mark.slow


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[Line]:
    async with line_up(tmp_path) as built:
        yield built


def held(line: Line) -> None:
    broken = {name: why for name, why in line.check().items() if why}
    assert not broken, f"{broken}\n{summary(line)}"


# Each failpoint once, at its 1st or 2nd pass (so both fixtures' units are hit); the
# campaign (scripts/crash_campaign.py) runs thousands more.
KILLS = [f"{point}={1 + n % 2}" for n, point in enumerate(sorted(failpoints.POINTS))]


async def test_killed_at_every_failpoint_the_line_loses_and_repeats_nothing(
        line: Line) -> None:
    for spec in KILLS:
        await line.run(spec, limit=20)
    finished = await line.finish()
    assert finished.ended == "finished", summary(line)
    killed = [r.failpoints for r in line.rounds if r.ended == "failpoint"]
    assert len(killed) >= len(KILLS) * 3 // 4, summary(line)  # most points were reached
    held(line)


async def test_killed_at_random_moments_the_line_loses_and_repeats_nothing(
        line: Line) -> None:
    rng = random.Random(7)
    for _ in range(6):
        await line.run(kill_after=rng.uniform(0.5, 4.0))
    finished = await line.finish()
    assert finished.ended == "finished", summary(line)
    held(line)


def test_failpoint_settings_are_checked() -> None:
    assert failpoints.parse("print.done=2, journal.commit") == {"print.done": 2,
                                                                 "journal.commit": 1}
    steps = (Identify, Issue, Write, Verify, MakeKey, Label, InstallCertificate)
    assert {f"step.{step.name}" for step in steps} < failpoints.POINTS  # every step has one
    for bad in ("print.don=1", "print.done=x", "print.done=0"):
        with pytest.raises(failpoints.FailpointError):
            failpoints.parse(bad)
