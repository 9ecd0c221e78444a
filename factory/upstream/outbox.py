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
from datetime import datetime
from typing import Any

from factory import clock, failpoints
from factory.claim_secret import ClaimSecrets
from factory.journal.errors import JournalError, OutboxSettled
from factory.journal.interface import Journal
from factory.journal.records import OutboxEntry
from factory.upstream import backoff
from factory.upstream.adapter import (
    PermanentError,
    Registration,
    RetryableError,
    Upstream,
    UpstreamError,
)
from factory.upstream.requests import PreclaimRequest, RegisterRequest, read_request

log = logging.getLogger("factory.outbox")
ACTOR = "upstream"


class OutboxWorker:
    """Sends what the outbox holds; one instance per station."""

    def __init__(self, journal: Journal, upstream: Upstream, *, concurrency: int = 4,
                 base: float = 1.0, cap: float = 300.0, poll: float = 1.0,
                 rng: random.Random | None = None,
                 secrets: ClaimSecrets | None = None,
                 credentials_hint: str = "check the upstream's credentials") -> None:
        self._journal, self._upstream, self._secrets = journal, upstream, secrets
        self._credentials_hint = credentials_hint  # what to do when they are refused
        self._slots = asyncio.Semaphore(concurrency)
        self._base, self._cap, self._poll = base, cap, poll
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._wakeup = asyncio.Event()
        self._stopping = False
        # Entries this worker set to wait → when (monotonic) they are due: a step of the wall
        # clock, which their persisted due time follows, does not make them wait longer.
        self._deadlines: dict[int, float] = {}
        self.last_error = ""  # the newest failed attempt's reason; "" after a success
        self.refused = ""  # why the upstream refuses the station's own token, while it does

    @property
    def upstream(self) -> Upstream:
        """The adapter it sends to (a RainMaker product's fixtures claim through it)."""
        return self._upstream

    def wake(self) -> None:
        """Look at the outbox now (something was just queued)."""
        self._wakeup.set()

    def stop(self) -> None:
        """Finish the round in flight (its answers journaled), then return from
        `run_forever`; what is still queued is sent after the next start."""
        self._stopping = True
        self._wakeup.set()

    async def run_forever(self) -> None:
        """Drain until stopped; a bad round is logged, never fatal."""
        while not self._stopping:
            try:
                await self.drain_once()
            except Exception:  # e.g. the journal refused a write: try again next round
                log.exception("outbox round failed; retrying")
            if self._stopping:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(self._poll):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def drain_once(self, limit: int = 100) -> int:
        """Send up to `limit` entries that are due now; returns how many were answered for
        good (settled, either way)."""
        now, mono = clock.unix(), clock.monotonic()
        overdue = [entry for entry, deadline in self._deadlines.items() if deadline <= mono]
        due = await self._journal.outbox_due(
            now, limit, horizon=now + backoff.longest(self._cap), ids=overdue)
        if len(due) < limit:  # the overdue ones not returned are settled (here or elsewhere)
            for entry_id in overdue:
                self._deadlines.pop(entry_id, None)
        for entry in due:
            self._deadlines.pop(entry.id, None)
        results = await asyncio.gather(*(self._send(entry) for entry in due))
        return sum(results)

    async def _send(self, entry: OutboxEntry) -> bool:
        async with self._slots:
            try:
                return await self._try(entry)
            except (PermanentError, UpstreamError, ValueError, KeyError) as exc:
                reason = exc.reason if isinstance(exc, UpstreamError) else str(exc)
                log.error("upstream refused %s of %s: %s", entry.action, entry.uci, reason)
                data = {"reason": reason, "attempts": entry.attempts + 1}
                if "spki_sha256" in entry.payload:  # which key's pre-claim failed
                    data["spki_sha256"] = entry.payload["spki_sha256"]
                await self._settle(entry, f"{entry.action}_failed", data, "failed", "failed")
                return True

    async def _try(self, entry: OutboxEntry) -> bool:
        """One attempt; True when the entry is settled, False when it waits for a retry.
        A refusal meant for this unit is raised to `_send`."""
        try:
            request = read_request(entry.action, entry.payload)
            if isinstance(request, RegisterRequest):
                kind, data, state = await self._register(request)
            elif isinstance(request, PreclaimRequest):
                kind, data, state = await self._preclaim(request)
            else:
                raise PermanentError(f"unknown outbox action {entry.action!r}", status=0)
        except PermanentError as exc:
            if exc.status not in (401, 403):
                raise
            # The station's own token is refused: every unit would be, alike. Keep them all
            # queued and say so, rather than set each aside for a person.
            log.error("upstream refuses the station's credentials (%d): %s; %s",
                      exc.status, exc.reason, self._credentials_hint)
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
        failpoints.hit("outbox.sent")
        await self._settle(entry, kind, {**data, "attempts": entry.attempts + 1}, state,
                           "done")
        log.info("unit %s %s upstream", entry.uci, kind)
        return True

    async def _registration(self, request: RegisterRequest) -> Registration:
        if request.claim_expires is not None:
            return await asyncio.to_thread(registration_from, request, self._secrets)
        return registration_from(request)

    async def _register(self, request: RegisterRequest) -> tuple[str, dict[str, Any], str]:
        result = await self._upstream.register(await self._registration(request))
        return "registered", {"created": result.created}, "registered"

    async def _preclaim(self, request: PreclaimRequest) -> tuple[str, dict[str, Any], str]:
        """Register (idempotent, so a retry after a crash is harmless), then pre-claim: the
        certificate goes in the journal (it is public), for the unit's fixture to write."""
        await self._upstream.register(await self._registration(request.registration))
        failpoints.hit("outbox.registered")
        cert = await self._upstream.preclaim(request.uci, request.account, request.csr)
        return "preclaimed", {
            "account": cert.account, "spki_sha256": request.spki_sha256,
            "fingerprint": cert.fingerprint,
            "not_after": cert.not_after.isoformat(timespec="seconds"),
            "endpoint": cert.endpoint, "certificate": cert.certificate_pem,
            "ca_chain": list(cert.ca_chain)}, "preclaimed"

    async def _retry(self, entry: OutboxEntry, wait: float, reason: str) -> None:
        self.last_error = reason
        await self._journal.outbox_retry(entry.id, entry.attempts + 1, clock.unix() + wait,
                                         reason)
        self._deadlines[entry.id] = clock.monotonic() + wait

    async def _settle(self, entry: OutboxEntry, kind: str, data: dict[str, Any],
                      state: str, outcome: str) -> None:
        try:
            await self._journal.record(entry.uci, kind, ACTOR, data, state=state,
                                       settles=(entry.id, outcome))
        except OutboxSettled as exc:  # another worker on this journal answered it first
            log.info("outbox entry %d for %s: %s", entry.id, entry.uci, exc)
        except JournalError as exc:  # e.g. voided meanwhile: close the entry all the same
            log.warning("outbox entry %d for %s closed without an event: %s", entry.id,
                        entry.uci, exc)
            await self._journal.outbox_close(entry.id, outcome)


def registration_from(request: RegisterRequest,
                      secrets: ClaimSecrets | None = None) -> Registration:
    """The Registration a queued request stands for; a unit with a claim secret gets its
    hash derived here (CPU-bound: call it off the event loop then)."""
    secret_hash, expires = None, request.claim_expires
    if expires is not None:
        if secrets is None:
            raise ValueError("the unit has a claim secret, but this station has no claim key")
        secret_hash = secrets.secret_hash(request.uci)
    return Registration(uci=request.uci, product=request.product,
                        hardware_id=request.hardware_id, model=request.model,
                        name=request.name,
                        created=datetime.fromisoformat(request.created),
                        claim_secret_hash=secret_hash,
                        claim_expires=None if expires is None
                        else datetime.fromisoformat(expires))
