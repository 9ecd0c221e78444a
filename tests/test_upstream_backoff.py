"""The retry schedule, with plain values: full jitter inside its window, the cap, Retry-After."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory.upstream.backoff import MAX_RETRY_AFTER, ceiling, delay, parse_retry_after

NOW = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)

attempts = st.integers(min_value=0, max_value=5000)
bases = st.floats(min_value=0.0, max_value=60.0)
caps = st.floats(min_value=0.0, max_value=86_400.0)
seeds = st.integers(min_value=0, max_value=2**32)
retry_afters = st.floats(min_value=0.0, max_value=10 * MAX_RETRY_AFTER)


@given(attempts, bases, caps, seeds)
def test_delay_stays_inside_the_jitter_window(attempt, base, cap, seed):
    wait = delay(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= wait <= min(cap, base * 2.0 ** min(attempt, 1000))


@given(attempts, bases, caps, seeds, retry_afters)
def test_delay_is_never_shorter_than_retry_after(attempt, base, cap, seed, retry_after):
    wait = delay(attempt, base=base, cap=cap, rng=random.Random(seed), retry_after=retry_after)
    assert wait >= min(retry_after, MAX_RETRY_AFTER)
    assert wait <= max(min(cap, base * 2.0 ** min(attempt, 1000)), MAX_RETRY_AFTER)


@given(attempts, seeds, st.floats(min_value=0.0, max_value=1e6))
def test_an_absurd_retry_after_is_clamped(attempt, seed, extra):
    wait = delay(attempt, base=1.0, cap=60.0, rng=random.Random(seed),
                 retry_after=MAX_RETRY_AFTER + extra, max_retry_after=MAX_RETRY_AFTER)
    assert wait == MAX_RETRY_AFTER


def test_a_short_retry_after_leaves_the_jitter_alone():
    plain = delay(6, base=1.0, cap=60.0, rng=random.Random(7))
    honoured = delay(6, base=1.0, cap=60.0, rng=random.Random(7), retry_after=0.001)
    assert plain > 0.001
    assert honoured == plain


def test_a_negative_retry_after_means_now():
    assert delay(0, base=0.0, cap=0.0, rng=random.Random(1), retry_after=-5.0) == 0.0


def test_the_window_doubles_until_the_cap():
    assert [ceiling(n, base=0.5, cap=10.0) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert ceiling(10**9, base=0.5, cap=10.0) == 10.0


def test_full_jitter_spreads_over_the_whole_window():
    rng = random.Random(2024)
    draws = [delay(4, base=1.0, cap=100.0, rng=rng) for _ in range(20_000)]
    # Uniform on [0, 16]: mean 8, a quarter of the draws in each quarter of the window.
    assert statistics.fmean(draws) == pytest.approx(8.0, abs=0.2)
    quarters = [sum(1 for d in draws if q * 4 <= d < (q + 1) * 4) for q in range(4)]
    assert all(4500 < n < 5500 for n in quarters), quarters
    assert min(draws) < 0.05 and max(draws) > 15.95


def test_the_same_seed_gives_the_same_schedule():
    def schedule(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [delay(n, base=1.0, cap=30.0, rng=rng) for n in range(10)]

    assert schedule(3) == schedule(3)
    assert schedule(3) != schedule(4)


@pytest.mark.parametrize("bad", [{"attempt": -1}, {"base": -1.0}, {"cap": -0.5}])
def test_nonsense_arguments_are_refused(bad):
    args = {"attempt": 0, "base": 1.0, "cap": 10.0} | bad
    with pytest.raises(ValueError, match=r"attempt|base"):
        delay(args.pop("attempt"), rng=random.Random(0), **args)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Fri, 14 Mar 2025 15:10:26 GMT", 60.0),
        ("Friday, 14-Mar-25 15:09:36 GMT", 10.0),  # RFC 850, obsolete but allowed
        ("Fri Mar 14 15:09:46 2025", 20.0),  # asctime, likewise
        ("Fri, 14 Mar 2025 15:00:00 GMT", 0.0),  # already past
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert parse_retry_after(header, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("header", ["", "soon", "-5", "1.5", "+3", "١٢", "Fri, 99 Mar 2025"])
def test_a_retry_after_that_is_neither_is_ignored(header):
    assert parse_retry_after(header, now=NOW) is None


@given(st.integers(min_value=0, max_value=10**6))
def test_an_http_date_round_trips(seconds):
    header = (NOW + timedelta(seconds=seconds)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(header, now=NOW) == float(seconds)
