"""Serial chaos in CI: eight fixtures at once (six framed, two console), each fed units on a
seeded random schedule of faults; a unit that does not come out verified is plugged in
again healthy. The invariants are factory/testbed/sim/chaos.py's `check`; scripts/serial_chaos.py
runs the same for longer."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.config import StationConfig
from factory.journal.interface import Journal
from factory.testbed.sim.chaos import FAULTS, Line, check, drivers, schedule
from tests.conftest import PRODUCT

pytestmark = pytest.mark.slow
DRIVERS = drivers(8, console=2)
SEED = 7
UNITS = 5  # per fixture: 40 units


async def test_eight_fixtures_under_random_serial_faults_keep_every_invariant(
        tmp_path: Path, config: StationConfig, journal: Journal) -> None:
    product = config.product(PRODUCT)
    assert product is not None
    plans = schedule(SEED, len(DRIVERS), UNITS)
    kinds = {p.fault for fixture in plans for p in fixture}
    assert len(kinds) >= 6, kinds  # the seed exercises most faults
    line = Line(journal, product, tmp_path, DRIVERS)
    try:
        outcomes = await line.run(plans)
        assert await check(line) == []
    finally:
        await line.stop()
    assert len(outcomes) == len(DRIVERS) * UNITS
    failed_first = [o for o in outcomes if o.first == "failed"]
    assert failed_first, "no unit failed with a UCI: the re-plug invariant went untested"
    assert {o.plan.fault for o in outcomes} <= set(FAULTS)
