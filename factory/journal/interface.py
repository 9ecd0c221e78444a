"""What the station needs of a journal, whatever stores it: the station types against these
Protocols, and `factory.journal.open_journal` picks the backend (only SQLite today)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from factory.journal.records import (
    Event,
    IssueRequest,
    IssueResult,
    OutboxEntry,
    OutboxRow,
    OutboxStats,
    Role,
    Token,
    Unit,
    VerifyResult,
)


class OutboxRequest(Protocol):
    """A request for the upstream, queued with a unit's step. The journal stores its action,
    key and JSON and never looks inside: the upstream's code owns what it means."""

    @property
    def action(self) -> str: ...

    @property
    def key(self) -> str:
        """Dedupes the outbox: a second request with the same key is not queued."""
        ...

    def to_json(self) -> dict[str, Any]: ...


class Changes(Protocol):
    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` (cheap, synchronous) after writes are committed; returns the
        function that stops it. Writes of other processes (the CLI) are not seen."""
        ...


class UnitJournal(Changes, Protocol):
    """Units: issuing, their steps, and reads of them."""

    async def issue(self, request: IssueRequest) -> IssueResult: ...
    async def void(self, uci: str, reason: str, actor: str) -> None: ...
    async def record(self, uci: str, kind: str, actor: str, data: dict[str, Any],
                     state: str | None = None, *, enqueue: OutboxRequest | None = None,
                     settles: tuple[int, str] | None = None) -> None: ...
    async def note(self, kind: str, actor: str, data: dict[str, Any]) -> None: ...
    async def unit(self, uci: str) -> Unit: ...
    async def many(self, ucis: list[str], kinds: tuple[str, ...],
                   page: int = 5000) -> dict[str, Unit]: ...
    async def units(self, *, state: str | None = None, product: str | None = None,
                    limit: int = 100,
                    before: int | None = None) -> tuple[list[Unit], int | None]: ...
    async def live_units_for_hardware(self, hardware_id: str) -> list[Unit]: ...
    async def labels_owed(self, limit: int = 200) -> list[str]: ...
    async def left_in(self, state: str, before: str,
                      sample: int = 3) -> tuple[int, list[str]]: ...
    async def unlabelled(self, products: list[str]) -> list[tuple[str, str]]: ...


class OutboxJournal(Protocol):
    """The outbox: requests for the upstream queued with their units' steps."""

    async def outbox_due(self, now: float, limit: int = 100, *, horizon: float | None = None,
                         ids: Sequence[int] = ()) -> list[OutboxEntry]: ...
    async def outbox_retry(self, entry: int, attempts: int, next_at: float,
                           error: str) -> None: ...
    async def outbox_close(self, entry: int, outcome: str) -> None: ...
    async def outbox_stats(self) -> OutboxStats: ...
    async def outbox_entries(self, state: str | None = None, uci: str | None = None,
                             limit: int = 100) -> list[OutboxRow]: ...


class TokenJournal(Protocol):
    """API tokens, stored as hashes."""

    async def add_token(self, name: str, role: Role, token_hash: str) -> None: ...
    async def revoke_token(self, name: str) -> None: ...
    async def active_token_hashes(self) -> list[tuple[str, str, Role]]: ...
    async def tokens(self) -> list[Token]: ...


class StatusJournal(Protocol):
    """What the status page, the metrics and the watchdog read."""

    @property
    def writing(self) -> bool: ...
    @property
    def write_failure(self) -> str: ...
    @property
    def commits(self) -> int: ...
    @property
    def hold(self) -> str:
        """Why writes that issue or record are refused until a person acts, or ''."""
        ...
    async def ping(self) -> None: ...
    async def stats(self) -> dict[str, int]: ...
    async def recent_units(self, limit: int = 20) -> list[Unit]: ...
    async def count_events(self, counters: Mapping[str, str],
                           since: Mapping[str, str]) -> dict[str, dict[str, int]]: ...
    async def newest_at(self) -> str | None: ...
    async def behind(self, after: int) -> tuple[int, str | None]:
        """How many of this station's events come after seq `after`, and the first one's
        `at` (None if none): a fleet center's lag, without reading them all."""
        ...


class AuditJournal(Protocol):
    """The hash chain: every event in order, and its check."""

    def events(self, after: int = 0) -> AsyncIterator[Event]:
        """The station's events after seq `after`, in order, from one snapshot."""
        ...
    async def verify(self) -> VerifyResult: ...
    async def accept_loss(self, actor: str) -> dict[str, Any]:
        """Journal `loss_accepted` naming what the hold named, and take work again."""
        ...


class Journal(UnitJournal, OutboxJournal, TokenJournal, StatusJournal, AuditJournal,
              Protocol):
    """A whole journal, as `open_journal` returns it."""

    async def close(self) -> None: ...
