"""The unit pipeline with an in-memory unit (plain values, no port) over a real journal."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import json5
import pytest

from factory import certs
from factory.config import StationConfig
from factory.journal.interface import Journal
from factory.units.driver import Identity, UnitDriver, Verification
from factory.units.errors import (
    IdentityConflict,
    ProtocolError,
    UnitError,
    UnitGone,
    UnitRefused,
    VerifyMismatch,
)
from factory.units.pipeline import DEFAULT_STEPS, Ledger, Pipeline, UnitRun
from tests.conftest import OTHER_PRODUCT, PRODUCT


@dataclass
class MemoryUnit:
    """A unit as plain values: files in a dict, faults by step name."""

    hardware_id: str = "7c:df:a1:00:03:3b"
    files: dict[str, bytes] = field(default_factory=dict)
    fail_at: dict[str, UnitError] = field(default_factory=dict)
    keygen: bool = True  # False: a unit that cannot make its own key

    def _maybe_fail(self, step: str) -> None:
        if step in self.fail_at:
            raise self.fail_at.pop(step)

    async def wake(self) -> None:
        self._maybe_fail("wake")

    async def identify(self) -> Identity:
        self._maybe_fail("identify")
        return Identity(hardware_id=self.hardware_id, model="AQ-100")

    async def write_file(self, path: str, data: bytes) -> None:
        self._maybe_fail("write")
        self.files[path] = data

    async def read_file(self, path: str) -> bytes:
        self._maybe_fail("read")
        if path not in self.files:
            raise UnitRefused(f"the unit has no {path}")
        return self.files[path]

    async def verify_file(self, path: str, data: bytes) -> Verification:
        self._maybe_fail("verify")
        held = self.files.get(path, b"")
        if held != data:
            raise VerifyMismatch("the unit's file differs")
        return Verification("sha256", hashlib.sha256(held).hexdigest(), len(held))

    async def make_key(self, path: str, common_name: str) -> str | None:
        self._maybe_fail("keygen")
        if not self.keygen:
            return None
        key = certs.load_key(self.files[path]) if path in self.files else certs.new_key()
        made = certs.csr_for(key, common_name)
        self.files[path] = made.key_pem
        return made.csr_pem

    async def present(self) -> bool:
        return True


def _run(config: StationConfig, product: str = PRODUCT) -> UnitRun:
    found = config.product(product)
    assert found is not None
    return UnitRun(fixture="f1", product=found, device_path="config/device.json5")


async def _kinds(journal: Journal, uci: str) -> list[str]:
    return [e.kind for e in (await journal.unit(uci)).events]


async def test_a_unit_goes_through_every_step(config: StationConfig, journal: Journal) -> None:
    seen: list[str] = []
    pipeline = Pipeline(journal, on_step=lambda r: seen.append(r.step))
    unit = MemoryUnit()
    run = await pipeline.provision(_run(config), unit)
    assert seen == ["identifying", "issuing", "writing", "verifying", "done"]
    assert run.uci is not None and run.created
    assert run.hardware_id == "7CDFA100033B"
    device = json5.loads(unit.files["config/device.json5"].decode())
    assert device["id"] == run.uci and device["product"] == PRODUCT
    assert await _kinds(journal, run.uci) == ["issued", "written", "verified"]
    stored = await journal.unit(run.uci)
    assert stored.state == "verified"
    assert stored.events[1].data["sha256"] == hashlib.sha256(run.payload).hexdigest()
    assert stored.events[2].data["algorithm"] == "sha256"


async def test_a_failed_unit_replugged_completes_with_the_same_uci(
        config: StationConfig, journal: Journal) -> None:
    pipeline = Pipeline(journal)
    unit = MemoryUnit(fail_at={"write": UnitGone("the unit went away")})
    with pytest.raises(UnitGone):
        await pipeline.provision(_run(config), unit)
    units, _ = await journal.units()
    assert len(units) == 1 and units[0].state == "failed"
    failed = (await journal.unit(units[0].uci)).events[-1]
    assert failed.kind == "failed"
    assert failed.data["step"] == "writing" and failed.data["code"] == "unplugged"
    assert "plug the unit in again" in failed.data["action"]

    run = await pipeline.provision(_run(config), unit)  # re-plugged, healthy now
    assert run.uci == units[0].uci and not run.created
    assert await _kinds(journal, run.uci) == ["issued", "failed", "written", "verified"]


async def test_failure_before_a_uci_is_a_station_event(config: StationConfig,
                                                       journal: Journal) -> None:
    pipeline = Pipeline(journal)
    unit = MemoryUnit(hardware_id="not a mac; rm -rf /")
    with pytest.raises(ProtocolError, match="identity is unusable"):
        await pipeline.provision(_run(config), unit)
    events = [e async for e in journal.events()]
    assert [(e.uci, e.kind) for e in events] == [("", "fixture_failed")]
    assert events[0].data["step"] == "identifying"
    assert (await journal.stats()) == {}
    assert (await journal.verify()).ok


async def test_hardware_bound_to_another_product_is_refused(config: StationConfig,
                                                            journal: Journal) -> None:
    pipeline = Pipeline(journal)
    first = await pipeline.provision(_run(config, OTHER_PRODUCT), MemoryUnit())
    with pytest.raises(IdentityConflict, match=f"belongs to unit {first.uci}"):
        await pipeline.provision(_run(config), MemoryUnit())
    assert (await journal.stats()) == {"verified": 1}


async def test_a_done_unit_replugged_is_only_checked(config: StationConfig,
                                                     journal: Journal) -> None:
    pipeline = Pipeline(journal)
    unit = MemoryUnit()
    run = await pipeline.provision(_run(config), unit)
    assert run.uci is not None
    again = await pipeline.provision(_run(config), unit)
    assert again.uci == run.uci and again.already_done
    assert await _kinds(journal, run.uci) == ["issued", "written", "verified"]

    unit.files["config/device.json5"] = b"{}"  # someone changed it on the unit
    with pytest.raises(VerifyMismatch):
        await pipeline.provision(_run(config), unit)
    await pipeline.provision(_run(config), unit)  # a failed unit is written again
    assert await _kinds(journal, run.uci) == ["issued", "written", "verified", "failed",
                                              "written", "verified"]


async def test_steps_can_be_added_without_touching_the_drivers(config: StationConfig,
                                                               journal: Journal) -> None:
    class Labelled:
        name = "labelling"

        async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
            assert run.uci is not None
            await ledger.record(run.uci, "labelled", run.actor, {"copies": 1}, "labelled")

    run = await Pipeline(journal, [*DEFAULT_STEPS, Labelled()]).provision(_run(config),
                                                                          MemoryUnit())
    assert run.uci is not None, "the pipeline must have issued a UCI"
    assert await _kinds(journal, run.uci) == ["issued", "written", "verified", "labelled"]
