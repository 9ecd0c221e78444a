"""A barcode scanner in serial mode (USB-CDC or RS-232) on a fixture: each code it reads
arrives as text ending with its configured suffix (CR, LF, CRLF or Tab) and goes to the
fixture's desk. Thin edge: bytes to codes; `ScanDesk` and the steps decide the rest."""

from __future__ import annotations

import asyncio
import logging
import re

from factory.config import Fixture
from factory.config.scanner import ScannerSettings
from factory.units.errors import PortBusy, PortMissing, ProtocolError, UnitGone, UnitTimeout
from factory.units.port import Port, open_port
from factory.units.scans import MAX_CODE, ScanDesk, ScanIgnored

log = logging.getLogger("factory.scanner")
RETRY_SECONDS = 2.0  # between tries to open a scanner that is missing, busy or unplugged
IDLE_SECONDS = 3600.0  # a scanner may read nothing for hours: that is no error


class SerialScanner:
    """Reads one fixture's scanner for as long as the station runs, reopening it when it is
    unplugged; its codes go to the fixture through the desk."""

    def __init__(self, fixture: str, settings: ScannerSettings, desk: ScanDesk) -> None:
        self.fixture, self.settings, self._desk = fixture, settings, desk
        self._end = re.compile(re.escape(settings.terminator))
        self._problem = ""

    async def run_forever(self) -> None:
        while True:
            try:
                port = await open_port(self.settings.port, self.settings.baud)
            except (PortBusy, PortMissing) as exc:
                self._trouble(exc.reason)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if self._problem:
                log.info("fixture %s: scanner %s is back", self.fixture, self.settings.port)
                self._problem = ""
            try:
                await self._read(port)
            except UnitGone:
                self._trouble(f"scanner {self.settings.port} was unplugged")
            finally:
                await port.close()
            await asyncio.sleep(RETRY_SECONDS)

    def _trouble(self, reason: str) -> None:
        if reason != self._problem:  # once per episode, not every retry
            self._problem = reason
            log.warning("fixture %s: %s (retrying)", self.fixture, reason)
            self._desk.tell(self.fixture, f"scanner: {reason}",
                            "check the scanner's cable and its port in the config")

    async def _read(self, port: Port) -> None:
        while True:
            try:
                raw = await port.read_until(self._end, IDLE_SECONDS, limit=MAX_CODE * 4)
            except UnitTimeout:
                continue
            except ProtocolError:
                await port.drain_input()  # noise, or a scanner set to another suffix
                self._desk.tell(self.fixture, "the scanner sent a code without its suffix",
                                f"set the scanner's suffix to {self.settings.suffix} (as "
                                "[fixtures.scanner] suffix says)")
                continue
            code = raw[:-len(self.settings.terminator)].decode("utf-8", "replace").strip()
            if code:
                await self.hand_over(code)

    async def hand_over(self, code: str) -> None:
        """Give one code to the fixture; a scanner has no screen, so what became of it is
        logged and shown on the fixture's card."""
        try:
            answer = await self._desk.scan(self.fixture, code, "serial")
        except ScanIgnored as exc:
            log.warning("fixture %s: scan ignored: %s", self.fixture, exc.message)
            return
        log.info("fixture %s: scan %s: %s", self.fixture,
                 "accepted" if answer.accepted else "refused", answer.message)


def start_scanners(fixtures: tuple[Fixture, ...] | list[Fixture],
                   desk: ScanDesk) -> list[asyncio.Task[None]]:
    """A task reading each fixture's serial scanner, for the fixtures that have one."""
    return [asyncio.create_task(SerialScanner(f.name, f.scanning.scanner, desk).run_forever(),
                                name=f"scanner-{f.name}")
            for f in fixtures if f.scanning.scanner.enabled]
