"""What the HTTP adapters share about a cloud's answer: which statuses mean "try again later"
(with the answer's Retry-After), and a short, one-line quote of a body for a message."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from factory.upstream.adapter import RetryableError
from factory.upstream.backoff import parse_retry_after

RETRYABLE_STATUSES = frozenset({408, 429})
SNIPPET = 200  # characters of a body quoted in a message


def retryable(status: int) -> bool:
    """A status the cloud means as "not now": 408, 429 and every 5xx."""
    return status in RETRYABLE_STATUSES or 500 <= status < 600


def retry_later(reason: str, status: int, headers: Mapping[str, str]) -> RetryableError:
    """The error for a retryable answer, honouring its Retry-After header."""
    header = headers.get("Retry-After")
    retry_after = None if header is None else parse_retry_after(header, now=datetime.now(UTC))
    return RetryableError(reason, status=status, retry_after=retry_after)


def snippet(raw: bytes) -> str:
    """A body as one line of at most SNIPPET characters."""
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "…"
