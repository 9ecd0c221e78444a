"""The live feed behind the page's server-sent events: one snapshot is built per change and
handed to every open page, so ten screens cost what one does.

A change is a journal commit (`poke`), or a change of the station's in-memory state (the
fixtures, the printer, the upstream; compared cheaply every `watch` seconds). Changes are
coalesced for `debounce` seconds; with nothing changing, a fresh snapshot still goes out every
`refresh` seconds (ages move on, the CLI writes unseen) and tells the page the link is alive.

A snapshot counts the day's events, so it costs more as the day fills (0.3-0.6 s with 250,000
units issued today, measured by scripts/load.py --soak): the feed rests `pace` times as long
as its last build took before the next, and a page that opens gets the newest snapshot if it
is under `fresh` seconds old, so fifty screens reconnecting cost no fifty builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

log = logging.getLogger("factory.status")
Snapshot = dict[str, Any]
MAX_REST = 5.0  # however slow the last build, pages hear from the station this often


class Subscription:
    """One open page: keeps only the newest snapshot, so a slow page never piles up."""

    def __init__(self) -> None:
        self._latest: Snapshot | None = None
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, snapshot: Snapshot) -> None:
        self._latest = snapshot
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[Snapshot]:
        return self._updates()

    async def _updates(self) -> AsyncIterator[Snapshot]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._closed:
                return
            if self._latest is not None:
                latest, self._latest = self._latest, None
                yield latest


class StatusFeed:
    """Builds snapshots when something changed and fans them out to the subscriptions."""

    def __init__(self, build: Callable[[], Awaitable[Snapshot]],
                 signature: Callable[[], object], *, debounce: float = 0.25,
                 watch: float = 0.5, refresh: float = 15.0, pace: float = 3.0,
                 fresh: float = 5.0) -> None:
        self.build = build
        self._signature = signature
        self._debounce, self._watch, self._refresh = debounce, watch, refresh
        self._pace, self._fresh = pace, fresh
        self._latest: tuple[float, Snapshot] | None = None  # (build started, snapshot)
        self._poked = asyncio.Event()
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    def poke(self) -> None:
        """Something the page shows changed (called after journal commits)."""
        self._poked.set()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """A subscription for as long as the `with` block runs."""
        subscription = Subscription()
        if self._closed:
            subscription.close()
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    async def current(self) -> Snapshot:
        """A snapshot built now, kept as the newest one."""
        started = time.monotonic()
        snapshot = await self.build()
        if self._latest is None or self._latest[0] < started:  # a slower, older build loses
            self._latest = (started, snapshot)
        return snapshot

    async def first(self) -> Snapshot:
        """What a page that just subscribed shows first: the newest snapshot if it is fresh
        (any change after it reaches the subscription with the next one), else a new one."""
        if self._latest is not None and time.monotonic() - self._latest[0] < self._fresh:
            return self._latest[1]
        return await self.current()

    def close(self) -> None:
        """End every subscription (the station stops): open pages are let go at once."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.close()

    async def run(self) -> None:
        """Until cancelled: wait for a change, coalesce, build once, send to all."""
        seen = self._signature()
        sent = time.monotonic()
        took, built_at = 0.0, 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._watch):
                    await self._poked.wait()
            now_seen = self._signature()
            due = (self._poked.is_set() or now_seen != seen
                   or time.monotonic() - sent >= self._refresh)
            if not due or not self._subscriptions:
                self._poked.clear()
                seen = now_seen
                if not self._subscriptions:
                    sent = time.monotonic()  # a new page gets its first snapshot on its own
                continue
            # The rest of a burst joins this snapshot; after a costly build, rest longer, so
            # steady changes cannot keep the station building snapshots back to back.
            rest = min(self._pace * took, MAX_REST) - (time.monotonic() - built_at)
            await asyncio.sleep(max(self._debounce, rest))
            self._poked.clear()
            seen, sent = self._signature(), time.monotonic()
            try:
                snapshot = await self.current()
            except Exception:  # e.g. the journal is busy: the next change or refresh retries
                log.exception("status snapshot failed")
                continue
            finally:
                built_at = time.monotonic()
                took = built_at - sent
            for subscription in list(self._subscriptions):
                subscription.put(snapshot)
