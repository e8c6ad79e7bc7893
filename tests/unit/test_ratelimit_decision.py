"""Unit tests of the pure parts of authnode.ratelimit: no Redis."""

from __future__ import annotations

import pytest

from authnode.errors import RateLimited
from authnode.ratelimit import Decision, NullRateLimiter, RateLimiter, decide
from authnode.settings import RateLimit

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


def test_peek_answers_whether_one_more_event_would_be_allowed() -> None:
    assert decide(0, -2, LIMIT, counted=False).allowed
    assert decide(2, 5000, LIMIT, counted=False) == Decision(True, 2, 1, 0)
    refused = decide(3, 5000, LIMIT, counted=False)
    assert refused == Decision(allowed=False, count=3, remaining=0, retry_after_s=5)


def test_retry_after_fits_the_rate_limited_error() -> None:
    error = RateLimited(decide(4, 12_001, LIMIT).retry_after_s)
    assert error.headers() == {"Retry-After": "13"}


@pytest.mark.anyio
async def test_null_limiter_allows_everything() -> None:
    limiter: RateLimiter = NullRateLimiter()
    for _ in range(10):
        decision = await limiter.check("login", "someone", RateLimit(count=1, window_s=1))
        assert decision.allowed
    assert (await limiter.peek("login", "someone", LIMIT)).allowed
    await limiter.reset("login", "someone")

