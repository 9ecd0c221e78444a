"""When to try an upstream call again: exponential backoff with full jitter and a cap, and the
server's `Retry-After` honoured. Pure: the caller passes the random source and the clock.

Full jitter (a uniform draw from zero to the exponential ceiling) spreads a backlog of retries
over the whole window, so units that failed together do not come back together.
"""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime

# A server's Retry-After is obeyed up to an hour; a longer (or bogus) one is clamped so that a
# misconfigured proxy cannot park the outbox for days.
MAX_RETRY_AFTER = 3600.0
# 2.0 ** 1024 overflows a float; past this exponent the cap has long since won.
_MAX_EXPONENT = 1000


def ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The top of the jitter window for retry `attempt` (0 for the first): min(cap, base·2ⁿ)."""
    if attempt < 0:
        raise ValueError(f"attempt counts retries from 0; got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap are durations in seconds; got base={base}, cap={cap}")
    return float(min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT)))


def longest(cap: float, max_retry_after: float = MAX_RETRY_AFTER) -> float:
    """The furthest off `delay` ever sets a retry: a due time later than now plus this was
    set before the wall clock went back, and is due now."""
    return max(cap, max_retry_after)


def delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: random.Random,
    retry_after: float | None = None,
    max_retry_after: float = MAX_RETRY_AFTER,
) -> float:
    """Seconds to wait before retry number `attempt`: a full-jitter draw from
    [0, min(cap, base·2ⁿ)], or the server's `retry_after` (clamped to `max_retry_after`) when
    that is longer."""
    wait = rng.uniform(0.0, ceiling(attempt, base=base, cap=cap))
    if retry_after is not None:
        wait = max(wait, min(max(retry_after, 0.0), max_retry_after))
    return float(wait)


def parse_retry_after(value: str, *, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP-date, RFC 9110
    §10.2.3), never negative; None when the header is not one of those."""
    value = value.strip()
    if value.isascii() and value.isdigit():  # delay-seconds is 1*DIGIT: no sign, no fraction
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)
