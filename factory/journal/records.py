"""What the journal stores and returns: plain values, no SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["device", "operator", "viewer"]
ROLES: tuple[Role, ...] = ("device", "operator", "viewer")


@dataclass(frozen=True)
class IssueRequest:
    """Ask for `count` new UCIs, or for the one UCI of a hardware identity."""

    product: str
    actor: str
    count: int = 1
    hardware_id: str | None = None
    idempotency_key: str | None = None
    # The request's meaning, compared when an idempotency key comes back.
    fingerprint: str = ""
    # A UCI the fleet center holds for this hardware id, issued at station `bound_at`: the
    # journal binds it here instead of drawing one (a unit re-tested at another station).
    uci: str | None = None
    bound_at: str = ""


@dataclass(frozen=True)
class IssueResult:
    ucis: list[str]
    created: bool


@dataclass(frozen=True)
class Event:
    seq: int
    uci: str
    kind: str
    at: str
    station: str
    actor: str
    data: dict[str, Any]
    hash: str
    # `data` as the journal stores it (canonical JSON: what `hash` covers), when read from
    # one; lets the fleet's shipper send it without writing the JSON again.
    text: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Unit:
    uci: str
    product: str
    hardware_id: str | None
    state: str
    station: str
    created_at: str
    updated_at: str
    events: list[Event] = field(default_factory=list)

    def last(self, kind: str, **match: Any) -> Event | None:
        """The newest event of `kind` whose data holds every `match` item."""
        for event in reversed(self.events):
            if event.kind == kind and all(event.data.get(k) == v for k, v in match.items()):
                return event
        return None


@dataclass(frozen=True)
class Token:
    name: str
    role: Role
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class OutboxEntry:
    """A request for the upstream waiting in the outbox."""

    id: int
    uci: str
    action: str
    payload: dict[str, Any]
    attempts: int
    created_at: str


@dataclass(frozen=True)
class OutboxRow:
    """An outbox entry as `factory outbox` and the status page show it (payload left out:
    it may hold a CSR, which is public but long)."""

    id: int
    uci: str
    action: str
    state: str  # pending, done, failed
    attempts: int
    created_at: str
    next_at: float  # unix time of the next attempt (pending entries)
    last_error: str | None


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    failed: int
    done: int
    oldest: str | None  # created_at of the oldest pending entry
