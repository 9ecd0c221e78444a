"""Offline-first shipping: the station keeps its own journal and ships every event to the fleet
center in order. The center's head for the station is where shipping resumes (after a crash of
either side nothing is skipped, and what the center holds already is skipped by it); while the
center is away the shipper backs off and the events wait in the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from factory import clock
from factory.fleet import center
from factory.journal.interface import Journal
from factory.journal.records import Event

log = logging.getLogger("factory.fleet")

PAGE = 5000  # events per transaction at the center
PAGES_AHEAD = 2
BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0
IDLE_LOOK = 1.0  # also looks this often when nothing was committed here (the CLI's writes)


@dataclass(frozen=True)
class Lag:
    """How far the center is behind this station: events not shipped yet, the oldest one's
    age in seconds (None when all are shipped), and why shipping stops, if it does."""

    events: int
    seconds: float | None
    center_seq: int
    problem: str = ""


def age(at: str) -> float:
    then = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return max(0.0, round((clock.now() - then).total_seconds(), 1))


async def lag(journal: Journal, conn: psycopg.AsyncConnection[Any], station: str) -> Lag:
    seq, _, refused = await center.head(conn, station)
    count, oldest = await journal.behind(seq)
    return Lag(count, age(oldest) if oldest else None, seq, refused)


class Shipper:
    """Ships one station's journal to the center, page by page."""

    def __init__(self, journal: Journal, station: str, url: str, *, page: int = PAGE,
                 rng: random.Random | None = None) -> None:
        self._journal, self._station, self._url, self._page = journal, station, url, page
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._stop = asyncio.Event()
        self.problem = ""  # why shipping stopped (refused by the center), or ''
        self.away = ""  # why the center cannot be reached now, or ''
        self.shipped = 0
        self._reported: tuple[int, str | None] | None = None
        self.center_seq: int | None = None  # the center's newest event of this station, once known

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def stop(self) -> None:
        self._stop.set()

    async def ship_once(self) -> int:
        """Ship what the journal holds now, page by page; returns how many events the center
        took (0: caught up, or refused: see `problem`). CenterError when the center cannot be
        reached.

        The journal is read from one snapshot in order, the next page read while the center
        takes the last one (the reader runs ahead by at most PAGES_AHEAD pages)."""
        pages: asyncio.Queue[list[Event] | None] = asyncio.Queue(PAGES_AHEAD)
        reader: asyncio.Task[None] | None = None
        taken = 0
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await center.connect(self._url)
            conn = self._conn  # `close()` may forget it meanwhile: this one then fails
            seq, _, refused = await center.head(conn, self._station)
            self.center_seq = seq
            if refused:
                self.problem = refused
                return 0
            # The center's newest event is sent again: if this journal holds another one
            # there (restored from a backup), the center says so instead of taking the rest.
            reader = asyncio.create_task(self._read(max(seq - 1, 0), pages))
            events = await pages.get()
            if seq and (not events or events[0].seq != seq):
                self.problem = (f"this station's journal has no event {seq}, which the center "
                                "holds: it went backwards (restored from a backup?)")
                return 0
            if events and len(events) <= (1 if seq else 0):
                events = await pages.get()  # nothing after the center's head: caught up
            while events:
                receipt = await center.receive(conn, self._station, events)
                self.problem = receipt.refused
                self.center_seq = receipt.head_seq
                self.shipped += receipt.accepted
                taken += receipt.accepted
                if receipt.refused:
                    return taken
                events = await pages.get()
            await reader  # its errors are the journal's
        except (psycopg.Error, OSError) as exc:
            await self.close()
            raise center.CenterError(f"the fleet center does not answer: {exc}") from exc
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        return taken

    async def _read(self, after: int, pages: asyncio.Queue[list[Event] | None]) -> None:
        """The journal's events after `after` into `pages`, `self._page` at a time (one more in
        the first, the center's head sent again); None at the end."""
        page: list[Event] = []
        size = self._page + 1
        try:
            async for event in self._journal.events(after=after):
                page.append(event)
                if len(page) >= size:
                    await pages.put(page)
                    page, size = [], self._page
            if page:
                await pages.put(page)
        except asyncio.CancelledError:
            raise
        except BaseException:
            await pages.put(None)  # the shipper stops waiting, then hears the error
            raise
        await pages.put(None)

    async def report(self) -> None:
        """Tell the center how far this journal goes (the fleet view's lag); once a round."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await center.connect(self._url)
            conn = self._conn  # `close()` may forget it meanwhile: this one then fails
            seq, _, _ = await center.head(conn, self._station)
            self.center_seq = seq
            count, oldest = await self._journal.behind(seq)
            if (seq + count, oldest) != self._reported:  # an idle station writes nothing
                await center.report(conn, self._station, seq + count, oldest)
                self._reported = (seq + count, oldest)
        except (psycopg.Error, OSError) as exc:
            await self.close()
            raise center.CenterError(f"the fleet center does not answer: {exc}") from exc

    async def ship_all(self) -> int:
        """Ship until caught up (or refused); returns how many events the center took."""
        total = 0
        while (taken := await self.ship_once()) > 0:
            total += taken
        return total

    async def run_forever(self) -> None:
        """Ship as the journal grows; back off while the center is away."""
        woken = asyncio.Event()
        stop_listening = self._journal.on_change(woken.set)
        attempt = 0
        try:
            while not self._stop.is_set():
                wait = IDLE_LOOK
                try:
                    woken.clear()
                    await self.report()
                    await self.ship_all()
                    self.away, attempt = "", 0
                except center.CenterError as exc:
                    if not self.away:
                        log.warning("fleet: %s; events wait in the journal", exc)
                    self.away = str(exc)
                    attempt += 1
                    wait = self._rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
                if self.problem:
                    log.error("fleet: the center refuses this station: %s", self.problem)
                    wait = max(wait, BACKOFF_CAP)
                await self._sleep(woken if not self.away else None, wait)
        finally:
            stop_listening()
            await self.close()

    async def _sleep(self, woken: asyncio.Event | None, seconds: float) -> None:
        waits = [asyncio.ensure_future(self._stop.wait())]
        if woken is not None:
            waits.append(asyncio.ensure_future(woken.wait()))
        _, pending = await asyncio.wait(waits, timeout=seconds,
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
