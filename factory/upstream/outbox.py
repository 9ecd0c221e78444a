"""The outbox worker: drains the journal's outbox to the upstream with bounded concurrency,
exponential backoff with full jitter and a cap, and the server's Retry-After honoured.

Each answer is journaled in the same transaction that closes its outbox entry, so after a
kill -9 an entry is either still pending (and is sent again: the upstream's requests are
idempotent, keyed per unit and action) or closed with its event, never both nor neither.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime
from typing import Any

from factory.journal.errors import JournalError
from factory.journal.records import OutboxEntry
from factory.journal.sqlite import Journal
from factory.upstream import backoff
from factory.upstream.adapter import (
    PermanentError,
    Registration,
    RetryableError,
    Upstream,
    UpstreamError,
)

log = logging.getLogger("factory.outbox")
ACTOR = "upstream"


def registration_payload(uci: str, product: str, hardware_id: str | None, model: str,
                         name: str, created: str) -> dict[str, Any]:
    """What goes in the outbox for a unit to register (plain JSON values)."""
    return {"uci": uci, "product": product, "hardware_id": hardware_id or "",
            "model": model, "name": name, "created": created}


class OutboxWorker:
    """Sends what the outbox holds; one instance per station."""

    def __init__(self, journal: Journal, upstream: Upstream, *, concurrency: int = 4,
                 base: float = 1.0, cap: float = 300.0, poll: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self._journal, self._upstream = journal, upstream
        self._slots = asyncio.Semaphore(concurrency)
        self._base, self._cap, self._poll = base, cap, poll
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._wakeup = asyncio.Event()
        self.last_error = ""  # the newest failed attempt's reason; "" after a success
        self.refused = ""  # why the upstream refuses the station's own token, while it does

    def wake(self) -> None:
        """Look at the outbox now (something was just queued)."""
        self._wakeup.set()

    async def run_forever(self) -> None:
        """Drain for as long as the station runs; a bad round is logged, never fatal."""
        while True:
            try:
                await self.drain_once()
            except Exception:  # e.g. the journal refused a write: try again next round
                log.exception("outbox round failed; retrying")
            self._wakeup.clear()
            try:
                async with asyncio.timeout(self._poll):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def drain_once(self) -> int:
        """Send every entry that is due now; returns how many were answered for good."""
        due = await self._journal.outbox_due(time.time())
        results = await asyncio.gather(*(self._send(entry) for entry in due))
        return sum(results)

    async def _send(self, entry: OutboxEntry) -> bool:
        async with self._slots:
            try:
                return await self._try(entry)
            except (PermanentError, UpstreamError, ValueError) as exc:
                reason = exc.reason if isinstance(exc, UpstreamError) else str(exc)
                log.error("upstream refused %s of %s: %s", entry.action, entry.uci, reason)
                await self._settle(entry, "register_failed",
                                   {"reason": reason, "attempts": entry.attempts + 1},
                                   "failed", "failed")
                return True

    async def _try(self, entry: OutboxEntry) -> bool:
        """One attempt; True when the entry is settled, False when it waits for a retry.
        A refusal meant for this unit is raised to `_send`."""
        try:
            if entry.action != "register":
                raise PermanentError(f"unknown outbox action {entry.action!r}", status=0)
            result = await self._upstream.register(registration_from(entry.payload))
        except PermanentError as exc:
            if exc.status not in (401, 403):
                raise
            # The station's own token is refused: every unit would be, alike. Keep them all
            # queued and say so, rather than set each aside for a person.
            log.error("upstream refuses the station's token (%d): %s; fix [upstream] "
                      "token_file", exc.status, exc.reason)
            self.refused = exc.reason
            await self._retry(entry, self._cap, exc.reason)
            return False
        except RetryableError as exc:
            wait = backoff.delay(entry.attempts, base=self._base, cap=self._cap,
                                 rng=self._rng, retry_after=exc.retry_after)
            log.info("upstream: %s for %s, retry %d in %.1f s", exc.reason, entry.uci,
                     entry.attempts + 1, wait)
            await self._retry(entry, wait, exc.reason)
            return False
        self.last_error = self.refused = ""
        await self._settle(entry, "registered",
                           {"created": result.created, "attempts": entry.attempts + 1},
                           "registered", "done")
        return True

    async def _retry(self, entry: OutboxEntry, wait: float, reason: str) -> None:
        self.last_error = reason
        await self._journal.outbox_retry(entry.id, entry.attempts + 1, time.time() + wait,
                                         reason)

    async def _settle(self, entry: OutboxEntry, kind: str, data: dict[str, Any],
                      state: str, outcome: str) -> None:
        try:
            await self._journal.record(entry.uci, kind, ACTOR, data, state=state,
                                       settles=(entry.id, outcome))
        except JournalError as exc:  # e.g. voided meanwhile: close the entry all the same
            log.warning("outbox entry %d for %s closed without an event: %s", entry.id,
                        entry.uci, exc)
            await self._journal.outbox_close(entry.id, outcome)


def registration_from(payload: dict[str, Any]) -> Registration:
    """The Registration an outbox payload stands for."""
    return Registration(uci=payload["uci"], product=payload["product"],
                        hardware_id=payload["hardware_id"], model=payload["model"],
                        name=payload["name"],
                        created=datetime.fromisoformat(payload["created"]))
