"""A fixture: one port on the line. It waits for a unit, provisions it, waits for it to
leave (or for another unit to appear), and starts again, for as long as the station runs.
Whatever happens on its port fails at most that unit, never another fixture or the station.

Stopping (the station shutting down): `stop()` takes no new unit and lets the one in the
fixture finish; `abandon()` cancels it mid-step, and the pipeline journals the interruption.
Either way the unit is safe: device.json5 is replaced atomically on the unit, and a restarted
station gives a unit plugged in again the same UCI and writes it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from factory.config import Fixture, Product
from factory.journal.errors import JournalError
from factory.states import FixtureStatus
from factory.units.driver import ExplainsSilence, UnitDriver
from factory.units.errors import PortBusy, PortMissing, UnitError, UnitGone
from factory.units.pipeline import (
    DEFAULT_STEPS,
    Ledger,
    Pipeline,
    Step,
    StepObserver,
    UnitRun,
)
from factory.units.port import Port, open_port

log = logging.getLogger("factory.fixture")
MAX_PORT_RETRY = 5.0  # seconds between tries to open a port that is busy or missing


def make_driver(fixture: Fixture, port: Port | None) -> UnitDriver:
    """The fixture's configured driver on an open port (None for esptool, which opens the
    device itself: see units/esp.py)."""
    if fixture.driver == "esptool":
        from factory.units.esp import EsptoolDriver
        return EsptoolDriver(fixture.port, fixture.baud, fixture.esptool)
    assert port is not None
    if fixture.driver == "console":
        from factory.units.console import ConsoleDriver
        return ConsoleDriver(port, fixture.console)
    from factory.units.framed import FramedDriver
    return FramedDriver(port, fixture.framed)


class FixtureRunner:
    """Runs one fixture until stopped (finishing its unit) or cancelled (abandoning it)."""

    def __init__(self, fixture: Fixture, product: Product, ledger: Ledger,
                 steps: Sequence[Step] = DEFAULT_STEPS,
                 observe: StepObserver | None = None) -> None:
        self.fixture, self.product, self._ledger = fixture, product, ledger
        self._pipeline = Pipeline(ledger, steps, on_step=self._on_step, observe=observe)
        self.status = FixtureStatus(fixture.name, fixture.port)
        self._port_problem = ""
        self._silence = ""  # why a device on the port does not answer, said once a while
        self._stopping = asyncio.Event()
        self._busy = False  # a unit is going through the pipeline
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Run the fixture in a task of its own (kept as `task`)."""
        self.task = asyncio.create_task(self.run_forever(), name=f"fixture-{self.fixture.name}")
        return self.task

    def stop(self) -> None:
        """Take no new unit; `run_forever` returns once the unit in the fixture is done."""
        self._stopping.set()
        if not self._busy:
            self.status.set("stopped")

    async def abandon(self) -> None:
        """Cancel the fixture now, with its unit mid-step (the pipeline journals it)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.status.set("stopped")

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when the fixture is told to stop."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    def _on_step(self, run: UnitRun) -> None:
        self.status.set(run.step, uci=run.uci)

    async def run_forever(self) -> None:
        """Open the port (retrying while it is busy or missing) and serve units on it."""
        delay = self.fixture.poll_interval
        while not self._stopping.is_set():
            try:
                port = await self._open_port()
            except (PortBusy, PortMissing) as exc:
                await self._port_error(exc)
                await self._pause(delay)
                delay = min(delay * 2, MAX_PORT_RETRY)
                continue
            delay = self.fixture.poll_interval
            if self._port_problem:
                log.info("fixture %s: port %s is open again", self.fixture.name,
                         self.fixture.port)
                self._port_problem = ""
            try:
                await self._serve(make_driver(self.fixture, port))
            except UnitGone:
                pass  # the unit was unplugged: the port goes with it (a pty, a USB adapter)
            except Exception as exc:  # a bug must cost this fixture a retry, not its life
                log.exception("fixture %s: unexpected error; reopening the port",
                              self.fixture.name)
                self.status.set("failed", f"unexpected error: {exc}",
                                "call an engineer; the fixture retries by itself")
                await self._pause(MAX_PORT_RETRY)
            finally:
                if port is not None:
                    await port.close()
        self.status.set("stopped")

    async def _open_port(self) -> Port | None:
        """The fixture's port; for esptool only a check that the device is there (esptool
        opens it itself, exclusively, while it works)."""
        if self.fixture.driver == "esptool":
            if not await asyncio.to_thread(os.path.exists, self.fixture.port):
                raise PortMissing(f"{self.fixture.port} does not exist (is the fixture's "
                                  "cable in?)")
            return None
        return await open_port(self.fixture.port, self.fixture.baud)

    async def _port_error(self, exc: UnitError) -> None:
        self.status.set("port-error", exc.reason, exc.action)
        if exc.reason == self._port_problem:
            return  # said once per episode, not every retry
        self._port_problem = exc.reason
        log.warning("fixture %s: %s -> %s (retrying)", self.fixture.name, exc.reason,
                    exc.action)
        try:
            await self._ledger.note("fixture_port_error", f"fixture:{self.fixture.name}",
                                    {"port": self.fixture.port, "code": exc.code,
                                     "reason": exc.reason})
        except JournalError:
            log.exception("fixture %s: cannot journal the port error", self.fixture.name)

    async def _serve(self, driver: UnitDriver) -> None:
        while not self._stopping.is_set():
            self.status.set("waiting")
            # A serial unit does not announce itself: look for one every poll_interval.
            while not self._stopping.is_set() and not await driver.present():
                self._silent(driver)
                await self._pause(self.fixture.poll_interval)
            self._silence = ""
            if self._stopping.is_set():
                return  # a unit that just arrived is left for the next start
            run = UnitRun(fixture=self.fixture.name, product=self.product,
                          device_path=self.fixture.device_path)
            self._busy = True
            try:
                await self._pipeline.provision(run, driver)
            except UnitGone as exc:
                self._failed(run, exc)
                raise
            except UnitError as exc:
                self._failed(run, exc)
            except JournalError as exc:
                log.error("fixture %s: journal refused the unit's step: %s",
                          self.fixture.name, exc)
                self.status.set("failed", f"the journal refused the step: {exc}",
                                "call an engineer: the station cannot record units", run.uci)
                self.status.failed += 1
            else:
                self.status.done += 1
                self.status.set("done", uci=run.uci)
                log.info("fixture %s: unit %s done (%s)", self.fixture.name, run.uci,
                         "; ".join(run.log))
            finally:
                self._busy = False
            if self._stopping.is_set():
                return
            await self._wait_for_change(driver, run.identity.hardware_id if run.identity
                                        else None)

    def _silent(self, driver: UnitDriver) -> None:
        """Show why a device on the port does not answer (an ESP32 not in its bootloader),
        logged once while it lasts, not every poll. Not journaled: no unit failed (the
        fixture's own bridge may be all there is), and the failed counter must not grow."""
        why = driver.silence if isinstance(driver, ExplainsSilence) else None
        if why is None or why.reason == self._silence:
            return
        self._silence = why.reason
        self.status.set("waiting", why.reason, why.action)
        log.warning("fixture %s: %s -> %s", self.fixture.name, why.reason, why.action)

    def _failed(self, run: UnitRun, exc: UnitError) -> None:
        self.status.failed += 1
        self.status.set("failed", exc.reason, exc.action, run.uci)
        log.warning("fixture %s: unit %s failed while %s: %s -> %s", self.fixture.name,
                    run.uci or run.hardware_id or "(unidentified)", run.step, exc.reason,
                    exc.action)

    async def _wait_for_change(self, driver: UnitDriver, identity: str | None) -> None:
        """Until the unit leaves, or a unit with another identity answers. A unit that stays
        and still cannot identify itself is waited out, not provisioned (and journaled)
        again every poll: the operator re-plugs it."""
        while not self._stopping.is_set():
            await self._pause(self.fixture.poll_interval)
            if not await driver.present():
                return
            try:
                seen = (await driver.identify()).hardware_id
            except UnitGone:
                raise
            except UnitError:
                continue
            if seen != identity:
                return
