"""Hardware identity across the fleet (mode 2): before this station issues a UCI for a
hardware id it has not seen, it asks the fleet center whether another station has; a unit
known elsewhere keeps its UCI, bound here with an `issued` event that names the station
(`bound_at`). When the center does not answer within ASK_SECONDS the station issues locally
at once (a unit never waits on the center, nor fails for it) and stops asking for
AWAY_SECONDS; should the hardware id turn out to be bound elsewhere too, the center flags the
conflict when both stations' events arrive (`center._store`), for a person to void one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

import psycopg

from factory.fleet import center
from factory.journal.errors import UnitNotFound
from factory.journal.interface import Journal
from factory.journal.records import IssueRequest, IssueResult

log = logging.getLogger("factory.fleet")

ASK_SECONDS = 1.0  # the longest a unit waits for the center's answer
AWAY_SECONDS = 30.0  # after no answer, issue locally without asking for this long


class FleetIssuing:
    """The station's journal, whose `issue` asks the fleet center first for a hardware id
    this journal has no live unit of. Everything else is the journal's own."""

    def __init__(self, journal: Journal, url: str, *, ask_seconds: float = ASK_SECONDS,
                 away_seconds: float = AWAY_SECONDS) -> None:
        self._journal, self._url = journal, url
        self._ask_seconds, self._away_seconds = ask_seconds, away_seconds
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._asking: set[asyncio.Task[tuple[str, str] | None]] = set()
        self._quiet_until = float("-inf")
        self.away = ""  # why the center did not answer the last question, or ''

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)

    async def issue(self, request: IssueRequest) -> IssueResult:
        """Issue as the journal does; a hardware id new here gets the fleet's UCI if the
        center knows it (and answers in time)."""
        if request.hardware_id and request.uci is None and request.count == 1:
            request = await self._with_fleet_uci(request, request.hardware_id)
        return await self._journal.issue(request)

    async def _with_fleet_uci(self, request: IssueRequest, hardware_id: str) -> IssueRequest:
        mine = await self._journal.live_units_for_hardware(hardware_id)
        if any(u.product == request.product for u in mine):
            return request  # this journal answers it (the same UCI again)
        found = await self.ask(request.product, hardware_id)
        if found is None:
            return request
        uci, station = found
        with contextlib.suppress(UnitNotFound):
            await self._journal.unit(uci)
            return request  # voided here already (not shipped yet): draw a new one
        log.info("fleet: hardware id %s is unit %s of station %s; bound here too",
                 hardware_id, uci, station)
        return dataclasses.replace(request, uci=uci, bound_at=station)

    async def ask(self, product: str, hardware_id: str) -> tuple[str, str] | None:
        """The center's (UCI, station) for this hardware id; None when it has none, or does
        not answer in time (then the station issues locally)."""
        if time.monotonic() < self._quiet_until:
            return None
        task = asyncio.ensure_future(self._ask(product, hardware_id))
        self._asking.add(task)
        task.add_done_callback(self._asked)
        try:
            # Shielded: cancelling psycopg mid-query waits up to 10 s for the server to agree,
            # which a center that went away never does; its connection is closed first.
            found = await asyncio.wait_for(asyncio.shield(task), self._ask_seconds)
        except (TimeoutError, center.CenterError, psycopg.Error, OSError) as exc:
            reason = str(exc) or f"no answer within {self._ask_seconds:g} s"
            if not self.away:
                log.warning("fleet: the center does not answer (%s); issuing locally for "
                            "%g s", reason, self._away_seconds)
            self.away = reason
            self._quiet_until = time.monotonic() + self._away_seconds
            await self._drop_connection()
            task.cancel()  # its connection is closed: it ends at once
            return None
        self.away = ""
        return found

    async def _ask(self, product: str, hardware_id: str) -> tuple[str, str] | None:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = await center.connect(self._url)
            return await center.bound(self._conn, product, hardware_id)

    def _asked(self, task: asyncio.Task[tuple[str, str] | None]) -> None:
        self._asking.discard(task)
        if not task.cancelled():
            task.exception()  # a late failure was dealt with (or dropped) already

    async def _drop_connection(self) -> None:
        """Close the connection now (closing does not wait for the server): a question
        stuck on it fails and lets go of the lock; the next question connects again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def close(self) -> None:
        """Stop asking (the journal is closed by its owner)."""
        await self._drop_connection()
        for task in list(self._asking):
            task.cancel()
        await asyncio.gather(*self._asking, return_exceptions=True)
