"""The journal's exception family; the HTTP and CLI edges turn these into answers."""

from __future__ import annotations


class JournalError(Exception):
    """Base of every journal failure."""


class JournalUnavailable(JournalError):
    """The journal cannot take writes (disk full, file locked, I/O error): nothing was stored."""


class BatchInterrupted(JournalUnavailable):
    """A big batch, written in parts, stopped after some of them were stored (the message
    says how many): its caller got no UCIs, and sends the request again."""


class UnitNotFound(JournalError):
    def __init__(self, uci: str) -> None:
        self.uci = uci
        super().__init__(f"no unit with UCI {uci} in this journal")


class AlreadyVoided(JournalError):
    def __init__(self, uci: str) -> None:
        self.uci = uci
        super().__init__(f"unit {uci} is already voided")


class IdempotencyConflict(JournalError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"Idempotency-Key {key!r} was used before with a different request; "
            "use a new key for a new request"
        )


class TokenExists(JournalError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a token named {name!r} exists already; pick another name")


class TokenNotFound(JournalError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no active token named {name!r}")


class OutboxSettled(JournalError):
    """The outbox entry was already answered (by another worker on the same journal): the
    answer is not journaled twice."""

    def __init__(self, entry: int, state: str) -> None:
        super().__init__(f"outbox entry {entry} is already {state}")
        self.entry, self.state = entry, state


class JournalInUse(JournalUnavailable):
    """Another station serves this journal already."""


class InvalidData(JournalError):
    """A request's data the journal cannot store (e.g. text with a lone surrogate): refused
    when the request is made, before it joins a batch."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


class Unstorable(JournalError):
    """A request holds what this journal cannot store (a NUL character in a PostgreSQL text):
    refused alone, the rest of its batch is written."""
