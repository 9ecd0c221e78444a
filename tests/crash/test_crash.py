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
from tests.crash.line import Line, line_up, summary

pytestmark = pytest.mark.slow


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[Line]:
    async with line_up(tmp_path) as built:
        yield built


def held(line: Line) -> None:
    broken = {name: why for name, why in line.check().items() if why}
    assert not broken, f"{broken}\n{summary(line)}"


# Each failpoint at its first and a later pass, so the kill lands on different units/steps.
KILLS = [f"{point}={n}" for point in sorted(failpoints.POINTS) for n in (1, 3)]


@pytest.mark.parametrize("group", [KILLS[0::2], KILLS[1::2]], ids=["first-pass", "third-pass"])
async def test_killed_at_every_failpoint_the_line_loses_and_repeats_nothing(
        line: Line, group: list[str]) -> None:
    for spec in group:
        await line.run(spec, limit=20)
    finished = await line.finish()
    assert finished.ended == "finished", summary(line)
    killed = [r for r in line.rounds if r.ended == "failpoint"]
    assert len(killed) >= len(group) * 2 // 3, summary(line)  # most points were reached
    held(line)


async def test_killed_at_random_moments_the_line_loses_and_repeats_nothing(
        line: Line) -> None:
    rng = random.Random(7)
    for _ in range(8):
        await line.run(kill_after=rng.uniform(0.5, 4.0))
    finished = await line.finish()
    assert finished.ended == "finished", summary(line)
    held(line)


def test_failpoint_settings_are_checked() -> None:
    assert failpoints.parse("print.done=2, journal.commit") == {"print.done": 2,
                                                                 "journal.commit": 1}
    for bad in ("print.don=1", "print.done=x", "print.done=0"):
        with pytest.raises(failpoints.FailpointError):
            failpoints.parse(bad)
