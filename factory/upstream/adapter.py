"""The one interface every upstream (the `http` registry, later AWS IoT) implements, the plain
values it takes and returns, and its exception family.

Errors come in two kinds because the outbox does two different things with them: a
`RetryableError` goes back in the queue (after backoff, never sooner than the server's
`Retry-After`); a `PermanentError` stops retrying and shows the unit as needing a person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, Protocol

from factory.uci import UciError, parse

ClaimState = Literal["unclaimed", "claimed"]
ClaimHow = Literal["user", "pre"]

_NO_PROBLEM: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Registration:
    """What the station tells the upstream about a unit it issued."""

    uci: str
    product: str
    hardware_id: str
    model: str
    name: str
    created: datetime
    # A salted hash of the label's claim secret (never the secret) and when it stops working.
    claim_secret_hash: str | None = None
    claim_expires: datetime | None = None

    def __post_init__(self) -> None:
        if (self.claim_secret_hash is None) != (self.claim_expires is None):
            raise ValueError("claim_secret_hash and claim_expires come together or not at all")
        for name in ("created", "claim_expires"):
            when = getattr(self, name)
            if when is not None and when.utcoffset() is None:
                raise ValueError(f"{name} must carry a time zone, got {when.isoformat()}")


@dataclass(frozen=True)
class ClaimStatus:
    status: ClaimState
    account: str | None = None
    how: ClaimHow | None = None
    claimed_at: datetime | None = None


@dataclass(frozen=True)
class CertificateInfo:
    """The newest certificate the upstream issued for a unit (not the certificate itself)."""

    fingerprint: str
    not_after: datetime


@dataclass(frozen=True)
class DeviceStatus:
    """A unit as the upstream knows it."""

    uci: str
    product: str
    hardware_id: str
    model: str
    name: str
    created: datetime
    registered: datetime
    has_claim_secret: bool
    claim_expires: datetime | None
    claim: ClaimStatus
    certificate: CertificateInfo | None


@dataclass(frozen=True)
class RegisterResult:
    """`created` is False when the upstream already had this unit with an identical body."""

    created: bool
    device: DeviceStatus


@dataclass(frozen=True)
class Certificate:
    """A pre-claimed unit's certificate, ready to write to the unit with its private key."""

    uci: str
    account: str
    certificate_pem: str
    ca_chain: tuple[str, ...]
    endpoint: str
    # "sha256:<hex of the DER>", for the batch report and for comparing with the unit's copy.
    fingerprint: str
    not_after: datetime
    # False when the upstream handed back the certificate this key already held.
    created: bool


class Upstream(Protocol):
    """Registers units, pre-claims them from a CSR and looks them up. Every method raises only
    `UpstreamError` subclasses for upstream trouble."""

    async def register(self, device: Registration) -> RegisterResult:
        """Register a unit; safe to repeat with the same registration."""
        ...

    async def preclaim(self, uci: str, account: str, csr_pem: str) -> Certificate:
        """Claim a registered unit for `account` and certify the CSR's key (CN = UCI)."""
        ...

    async def lookup(self, uci: str) -> DeviceStatus:
        """The upstream's view of a unit."""
        ...


class UpstreamError(Exception):
    """Base of every error an upstream adapter raises on purpose; `reason` is for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentError(UpstreamError):
    """The upstream refused the request and will refuse it again: the unit needs a person.
    `problem` is the RFC 9457 problem body as sent (empty when there was none)."""

    action = "set the unit aside for a person: the upstream refused it (see the reason)"

    def __init__(self, reason: str, *, status: int,
                 problem: Mapping[str, Any] = _NO_PROBLEM) -> None:
        super().__init__(reason)
        self.status = status
        self.problem = problem

    @property
    def problem_type(self) -> str | None:
        """The problem's `type` URI, the thing to branch on (never `detail`)."""
        value = self.problem.get("type")
        return value if isinstance(value, str) else None


class ConflictError(PermanentError):
    """409: the upstream holds this unit with a different body, or another account owns it."""

    @property
    def conflicting(self) -> tuple[str, ...]:
        """The fields that differ, when the upstream said (register's 409)."""
        fields = self.problem.get("conflicting")
        if not isinstance(fields, list):
            return ()
        return tuple(f for f in fields if isinstance(f, str))


class RetryableError(UpstreamError):
    """Worth trying again later: 408, 429, 5xx, a timeout or a broken connection. `status` is
    None when no answer came; `retry_after` is the server's wish in seconds, if it gave one."""

    def __init__(self, reason: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


def canonical_uci(uci: str) -> str:
    """`uci` if it is a UCI in canonical form (it goes into URLs and thing names), else a
    ValueError: an upstream is never sent a UCI another form could alias."""
    try:
        if parse(uci) == uci:
            return uci
    except UciError:
        pass
    raise ValueError(f"{uci!r} is not a canonical UCI (16 Crockford symbols, no hyphens)")
