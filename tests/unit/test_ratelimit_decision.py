"""Unit tests of the pure parts of authnode.shared.ratelimit: no Redis."""

from __future__ import annotations

import pytest

from authnode.errors import RateLimited
from authnode.settings import RateLimit
from authnode.shared.ratelimit import (
    Decision,
    NullRateLimiter,
    RateLimiter,
    decide,
    decide_reservation,
)

LIMIT = RateLimit(count=3, window_s=60)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_hit_allowed_up_to_the_limit(count: int) -> None:
    decision = decide(count, 59_000, LIMIT)
    assert decision == Decision(allowed=True, count=count, remaining=3 - count, retry_after_s=0)


def test_hit_refused_past_the_limit_rounds_retry_after_up() -> None:
    decision = decide(4, 12_001, LIMIT)
    assert decision == Decision(allowed=False, count=4, remaining=0, retry_after_s=13)


def test_retry_after_is_at_least_one_second() -> None:
    assert decide(4, 1, LIMIT).retry_after_s == 1
    assert decide(4, 1000, LIMIT).retry_after_s == 1


def test_unknown_expiry_counts_as_a_full_window() -> None:
    assert decide(9, -1, LIMIT).retry_after_s == 60
    assert decide(9, 0, LIMIT).retry_after_s == 60


PER_CLIENT = RateLimit(count=3, window_s=60)
TOTAL = RateLimit(count=10, window_s=3600)


def test_a_reservation_allowed_reports_what_is_left_of_the_tighter_counter() -> None:
    # [allowed, failures from this client, failures from all clients, wait ms]
    assert decide_reservation([1, 1, 1, 0], per_client=PER_CLIENT, total=TOTAL) == \
        Decision(allowed=True, count=1, remaining=2, retry_after_s=0)
    assert decide_reservation([1, 2, 9, 0], per_client=PER_CLIENT, total=TOTAL) == \
        Decision(allowed=True, count=2, remaining=1, retry_after_s=0)


def test_a_refused_reservation_waits_for_the_counter_that_refused() -> None:
    assert decide_reservation([0, 3, 3, 12_001], per_client=PER_CLIENT, total=TOTAL) == \
        Decision(allowed=False, count=3, remaining=0, retry_after_s=13)
    assert decide_reservation([0, 1, 10, 3_599_000], per_client=PER_CLIENT, total=TOTAL) == \
        Decision(allowed=False, count=1, remaining=0, retry_after_s=3599)


def test_a_refused_reservation_expiring_now_still_says_one_second() -> None:
    refused = decide_reservation([0, 3, 3, 0], per_client=PER_CLIENT, total=TOTAL)
    assert refused.retry_after_s == 1


def test_retry_after_fits_the_rate_limited_error() -> None:
    error = RateLimited(decide(4, 12_001, LIMIT).retry_after_s)
    assert error.headers() == {"Retry-After": "13"}


@pytest.mark.anyio
async def test_null_limiter_allows_everything() -> None:
    limiter: RateLimiter = NullRateLimiter()
    for _ in range(10):
        decision = await limiter.check("login", "someone", RateLimit(count=1, window_s=1))
        assert decision.allowed
    reserved = await limiter.reserve_attempt("someone@example.com", "192.0.2.1",
                                             per_client=PER_CLIENT, total=TOTAL)
    assert reserved.allowed
    await limiter.release_attempt("someone@example.com", "192.0.2.1")

