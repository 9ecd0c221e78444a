"""Where label scans meet the fixtures that wait for them. A scan comes from any source (the
HTTP API, a serial scanner, a keyboard-wedge scanner typing into the status page) and goes to
the one fixture named; a fixture takes scans only while a step waits for one. Pure asyncio:
no ports, no HTTP; the sources are thin edges that call `ScanDesk.scan`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from factory.states import FixtureStatus

ScanSource = Literal["api", "serial", "page"]
MAX_CODE = 512  # no label holds more; a longer "scan" is someone pasting a file


class ScanIgnored(Exception):
    """The scan went to no fixture: `unknown` fixture, or one not waiting for a scan."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.message, self.unknown = message, unknown


@dataclass(frozen=True)
class ScanAnswer:
    """What became of a scan a fixture took: accepted (`uci` the label named) or refused."""

    accepted: bool
    message: str
    uci: str | None = None


@dataclass
class Scan:
    code: str
    source: ScanSource
    answered: asyncio.Future[ScanAnswer] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    def answer(self, accepted: bool, message: str, uci: str | None = None) -> None:
        if not self.answered.done():
            self.answered.set_result(ScanAnswer(accepted, message, uci))


class ScanDesk:
    """The station's fixtures and which of them wait for a scan now."""

    def __init__(self) -> None:
        self._fixtures: dict[str, FixtureStatus] = {}
        self._inboxes: dict[str, asyncio.Queue[Scan]] = {}
        # One binding at a time across fixtures: the check that a label is free and the
        # `bound` event that takes it must not interleave with another fixture's.
        self.binding = asyncio.Lock()

    def add_fixture(self, status: FixtureStatus) -> None:
        """A fixture scans may be sent to; its card shows what became of them."""
        self._fixtures[status.name] = status

    def waiting(self, fixture: str) -> bool:
        return fixture in self._inboxes

    @contextlib.contextmanager
    def wait_for(self, fixture: str) -> Iterator[asyncio.Queue[Scan]]:
        """Take scans for `fixture` while the block runs; scans left unread are refused."""
        inbox: asyncio.Queue[Scan] = asyncio.Queue()
        self._inboxes[fixture] = inbox
        try:
            yield inbox
        finally:
            del self._inboxes[fixture]
            while not inbox.empty():
                inbox.get_nowait().answer(False, f"fixture {fixture} stopped waiting for a "
                                                 "scan before it read this one; scan again")

    def tell(self, fixture: str, reason: str, action: str = "") -> None:
        """Show a scan's outcome on the fixture's card (its state stays)."""
        status = self._fixtures.get(fixture)
        if status is not None:
            status.set(status.state, reason, action, status.uci)

    async def scan(self, fixture: str, code: str, source: ScanSource) -> ScanAnswer:
        """Hand a scanned code to the fixture and wait for its answer; ScanIgnored if the
        fixture is unknown or not waiting for a scan."""
        if fixture not in self._fixtures:
            raise ScanIgnored(f"there is no fixture {fixture!r}; the fixtures are: "
                              f"{', '.join(sorted(self._fixtures)) or '(none)'}", unknown=True)
        inbox = self._inboxes.get(fixture)
        if inbox is None:
            state = self._fixtures[fixture].state
            message = (f"fixture {fixture} is not waiting for a scan (it is {state}); the "
                       "scan was ignored: scan when its card asks for one")
            if state not in ("failed", "port-error"):  # never hide what a person must fix
                self.tell(fixture, message)
            raise ScanIgnored(message)
        scan = Scan(code[:MAX_CODE], source)
        inbox.put_nowait(scan)
        return await asyncio.shield(scan.answered)
