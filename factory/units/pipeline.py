"""The unit pipeline: identify → issue → render → write → verify, each step journaled before
the next starts. Pure station logic: it sees a driver (bytes are the driver's business) and a
ledger (the journal), and knows nothing of ports, SQL or HTTP.

Steps are objects in a list, so later steps (label, register) are appended without touching
the drivers or the steps before them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from factory import failpoints
from factory.config import Product
from factory.hardware import HardwareIdError, normalise
from factory.journal.interface import Changes, OutboxRequest
from factory.journal.records import IssueRequest, IssueResult, Unit
from factory.states import DONE_STATES, EventKind
from factory.units.device_file import render
from factory.units.driver import Identity, RendersPayload, UnitDriver, Verification
from factory.units.errors import IdentityConflict, ProtocolError, UnitError

if TYPE_CHECKING:
    from factory.units.esp_nvs import Entry

log = logging.getLogger("factory.pipeline")



class Ledger(Changes, Protocol):
    """What the pipeline needs of the journal."""

    async def issue(self, request: IssueRequest) -> IssueResult: ...
    async def unit(self, uci: str) -> Unit: ...
    async def record(self, uci: str, kind: EventKind, actor: str, data: dict[str, Any],
                     state: str | None = None, *,
                     enqueue: OutboxRequest | None = None) -> None: ...
    async def note(self, kind: EventKind, actor: str, data: dict[str, Any]) -> None: ...
    async def live_units_for_hardware(self, hardware_id: str) -> list[Unit]: ...


@dataclass
class UnitRun:
    """One unit's trip through the pipeline, as far as it got."""

    fixture: str
    product: Product
    device_path: str
    step: str = "waiting"
    identity: Identity | None = None
    hardware_id: str | None = None
    uci: str | None = None
    created: bool = False
    already_done: bool = False
    payload: bytes = field(default=b"", repr=False)  # an NVS image may hold the unit's key
    verification: Verification | None = None
    key_id: str | None = None  # hex SHA-256 of the unit's public key (pre-claimed products)
    issued_at: str | None = None  # when the journal issued the UCI (a stable `created`)
    # NVS namespaces an upstream adds to the unit's partition (RainMaker's rmaker_creds):
    # they may hold the unit's private key, so they live only here, never in the journal.
    nvs_extra: dict[str, list[Entry]] = field(default_factory=dict, repr=False)
    error: UnitError | None = None
    log: list[str] = field(default_factory=list)

    @property
    def actor(self) -> str:
        return f"fixture:{self.fixture}"


# The outbox request a verified unit causes, if any.
Enqueue = Callable[[UnitRun], OutboxRequest | None]


class Step(Protocol):
    name: str  # what the fixture shows while the step runs: identifying, writing, ...

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None: ...


class Identify:
    name = "identifying"

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        await driver.wake()
        run.identity = await driver.identify()
        try:
            run.hardware_id = normalise(run.identity.hardware_id)
        except HardwareIdError as exc:
            raise ProtocolError(f"the unit's identity is unusable: {exc}") from exc
        for unit in await ledger.live_units_for_hardware(run.hardware_id):
            if unit.product != run.product.id:
                raise IdentityConflict(
                    f"hardware id {run.hardware_id} already belongs to unit {unit.uci} of "
                    f"product {unit.product}, not {run.product.id}")
        run.log.append(f"identified {run.hardware_id}"
                       + (f" ({run.identity.model})" if run.identity.model else ""))


class Issue:
    name = "issuing"

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        assert run.hardware_id is not None
        result = await ledger.issue(IssueRequest(product=run.product.id, actor=run.actor,
                                                 hardware_id=run.hardware_id))
        run.uci, run.created = result.ucis[0], result.created
        if not run.created:
            run.already_done = (await ledger.unit(run.uci)).state in DONE_STATES
        run.log.append(f"{'issued' if run.created else 'already has'} UCI {run.uci}")


class Write:
    name = "writing"

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        assert run.uci is not None
        if isinstance(driver, RendersPayload):
            run.device_path, run.payload = driver.render(run.product, run.uci, run.nvs_extra)
        else:
            run.payload = render(run.product, run.uci)
        if run.already_done:
            return  # Verify checks the file; a mismatch there sends the unit round again
        await driver.write_file(run.device_path, run.payload)
        await ledger.record(run.uci, "written", run.actor, {
            "path": run.device_path, "bytes": len(run.payload),
            "sha256": hashlib.sha256(run.payload).hexdigest()}, state="written")
        run.log.append(f"wrote {run.device_path} ({len(run.payload)} bytes)")


class Verify:
    """Read back and verify; `enqueue` (given by the wiring when an upstream is configured)
    names the outbox request that goes in the same transaction as `verified`."""

    name = "verifying"

    def __init__(self, enqueue: Enqueue | None = None) -> None:
        self._enqueue = enqueue

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        assert run.uci is not None
        run.verification = await driver.verify_file(run.device_path, run.payload)
        data = {"path": run.device_path, "algorithm": run.verification.algorithm,
                "digest": run.verification.digest, "bytes": run.verification.size}
        if run.already_done:
            run.log.append(f"already provisioned; {run.device_path} still verifies "
                           f"({run.verification.algorithm})")
            return
        request = self._enqueue(run) if self._enqueue else None
        await ledger.record(run.uci, "verified", run.actor, data, state="verified",
                            enqueue=request)
        run.log.append(f"verified {run.device_path} by {run.verification.algorithm}")


DEFAULT_STEPS: tuple[Step, ...] = (Identify(), Issue(), Write(), Verify())
# Told of every step's outcome ("ok" or the failure's code) and how long it took (metrics).
StepObserver = Callable[[str, str, float], None]


class Pipeline:
    """Runs the steps for one unit; a failure is journaled, then raised to the fixture."""

    def __init__(self, ledger: Ledger, steps: Sequence[Step] = DEFAULT_STEPS,
                 on_step: Callable[[UnitRun], None] | None = None,
                 observe: StepObserver | None = None) -> None:
        self._ledger, self._steps, self._on_step = ledger, tuple(steps), on_step
        self._observe = observe

    async def provision(self, run: UnitRun, driver: UnitDriver) -> UnitRun:
        """Take one unit through every step; raises the UnitError that stopped it."""
        for step in self._steps:
            run.step = step.name
            if self._on_step:
                self._on_step(run)
            started = time.perf_counter()
            failpoints.hit(f"step.{step.name}")
            try:
                await step.run(run, driver, self._ledger)
            except UnitError as exc:
                self._observed(step.name, exc.code, started)
                run.error = exc
                await self._journal_failure(run, exc)
                raise
            except asyncio.CancelledError:
                self._observed(step.name, "interrupted", started)
                await self._journal_interruption(run)
                raise
            self._observed(step.name, "ok", started)
        run.step = "done"
        failpoints.hit("step.done")
        if self._on_step:
            self._on_step(run)
        return run

    def _observed(self, step: str, outcome: str, started: float) -> None:
        if self._observe:
            self._observe(step, outcome, time.perf_counter() - started)

    async def _journal_interruption(self, run: UnitRun) -> None:
        """The station stopped mid-step: say so, keeping the unit's state (a restart writes
        the unit again). Best effort: the journal may be closing too."""
        data = {"step": run.step, "reason": "the station stopped during this step",
                "action": "none: the restarted station writes the unit again "
                          "(plug it in again if it was taken away)"}
        try:
            if run.uci is not None:
                await self._ledger.record(run.uci, "interrupted", run.actor, data)
            else:
                await self._ledger.note("fixture_interrupted", run.actor,
                                        {**data, "hardware_id": run.hardware_id})
        except Exception as exc:  # the cancellation, not this, is what the caller sees
            log.warning("%s: could not journal the interruption: %s", run.actor, exc)
        run.log.append(f"INTERRUPTED while {run.step}")

    async def _journal_failure(self, run: UnitRun, exc: UnitError) -> None:
        data = {"step": run.step, "code": exc.code, "reason": exc.reason,
                "action": exc.action}
        if run.uci is not None:
            await self._ledger.record(run.uci, "failed", run.actor, data, state="failed")
        else:
            await self._ledger.note("fixture_failed", run.actor,
                                    {**data, "hardware_id": run.hardware_id})
        run.log.append(f"FAILED while {run.step}: {exc.reason} -> {exc.action}")
