"""The lockout's Lua scripts (reserve, release) against real Redis, single node and cluster.

What they must hold (see the "Lockout" part of authnode.shared.ratelimit's docstring): an attempt
is counted before its password is checked, atomically, so concurrent attempts never get
more than the limit's count of reservations; a refused attempt counts nothing; the
per-client and per-account counters are independent but refuse together; a right password
clears its client's failures and takes back only its own count from the total.
"""

from __future__ import annotations

import time
import uuid

import anyio
import pytest
from redis.asyncio.cluster import RedisCluster

from authnode.clients.redis import RedisClient
from authnode.errors import Unavailable
from authnode.settings import RateLimit
from authnode.shared import redis_keys
from authnode.shared.ratelimit import Decision, RedisRateLimiter
from tests.integration.test_ratelimit import _client, _closed_port_url
from tests.services import RedisTarget

pytestmark = pytest.mark.anyio

PER_CLIENT = RateLimit(count=3, window_s=60)
TOTAL = RateLimit(count=5, window_s=600)
ATTACKER, OWNER = "198.51.100.7", "203.0.113.20"


def _account() -> str:
    return f"lockout-{uuid.uuid4().hex[:12]}@example.com"


async def _reserve(limiter: RedisRateLimiter, account: str, client: str, *,
                   per_client: RateLimit = PER_CLIENT, total: RateLimit = TOTAL) -> Decision:
    return await limiter.reserve_attempt(account, client, per_client=per_client, total=total)


async def _counters(client: RedisClient, account: str, who: str) -> tuple[int | None,
                                                                          int | None]:
    pair = await client.get(redis_keys.login_failures(account, who))
    total = await client.get(redis_keys.login_failures_total(account))
    return (None if pair is None else int(pair), None if total is None else int(total))


async def test_reserves_up_to_the_limit_then_refuses_without_counting(
        redis_target: RedisTarget) -> None:
    account = _account()
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter = RedisRateLimiter(client)
        for expected in (1, 2, 3):
            reserved = await _reserve(limiter, account, ATTACKER)
            assert (reserved.allowed, reserved.count) == (True, expected)
        for _ in range(10):
            refused = await _reserve(limiter, account, ATTACKER)
            assert not refused.allowed
            assert 0 < refused.retry_after_s <= PER_CLIENT.window_s
        # Ten refusals counted nothing: the total is the three reserved attempts.
        assert await _counters(client, account, ATTACKER) == (3, 3)
        # Both counters expire with their windows; neither lingers without an expiry.
        pair_ttl = await client.pttl(redis_keys.login_failures(account, ATTACKER))
        total_ttl = await client.pttl(redis_keys.login_failures_total(account))
        assert 0 < pair_ttl <= PER_CLIENT.window_s * 1000
        assert PER_CLIENT.window_s * 1000 < total_ttl <= TOTAL.window_s * 1000


async def test_one_client_locked_leaves_another_free_until_the_total(
        redis_target: RedisTarget) -> None:
    account = _account()
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter = RedisRateLimiter(client)
        for _ in range(3):
            assert (await _reserve(limiter, account, ATTACKER)).allowed
        assert not (await _reserve(limiter, account, ATTACKER)).allowed
        # The owner's address is its own counter; the total (5) has room for two more.
        first = await _reserve(limiter, account, OWNER)
        assert (first.allowed, first.count, first.remaining) == (True, 1, 1)
        assert (await _reserve(limiter, account, OWNER)).allowed
        # Total full: every address is refused, a fresh one too, for the total's window.
        for who in (OWNER, "192.0.2.99"):
            refused = await _reserve(limiter, account, who)
            assert not refused.allowed
            assert PER_CLIENT.window_s < refused.retry_after_s <= TOTAL.window_s
        assert await _counters(client, account, "192.0.2.99") == (None, 5)
        # Another account is untouched.
        assert (await _reserve(limiter, _account(), ATTACKER)).allowed


async def test_concurrent_reservations_never_exceed_the_limit(
        redis_target: RedisTarget) -> None:
    """30 attempts at once from one client through two instances: exactly 3 reserved."""
    account = _account()
    async with (_client(redis_target.url, redis_target.mode) as one,
                _client(redis_target.url, redis_target.mode) as two):
        instances = [RedisRateLimiter(one), RedisRateLimiter(two)]
        decisions: list[Decision] = []

        async def attempt(limiter: RedisRateLimiter) -> None:
            decisions.append(await _reserve(limiter, account, ATTACKER))

        async with anyio.create_task_group() as group:
            for index in range(30):
                group.start_soon(attempt, instances[index % 2])

        allowed = sorted(d.count for d in decisions if d.allowed)
        assert allowed == [1, 2, 3]  # atomic: no two attempts got the same place
        assert sum(not d.allowed for d in decisions) == 27
        assert await _counters(one, account, ATTACKER) == (3, 3)


async def test_release_clears_the_client_and_takes_back_one_from_the_total(
        redis_target: RedisTarget) -> None:
    account = _account()
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter = RedisRateLimiter(client)
        for _ in range(2):
            await _reserve(limiter, account, ATTACKER)
        for _ in range(2):
            await _reserve(limiter, account, OWNER)
        assert await _counters(client, account, OWNER) == (2, 4)
        # The owner's third attempt is the right password.
        await _reserve(limiter, account, OWNER)
        await limiter.release_attempt(account, OWNER)
        # The owner's address starts afresh; the attacker's two failures still count.
        assert await _counters(client, account, OWNER) == (None, 4)
        assert await _counters(client, account, ATTACKER) == (2, 4)
        # Many right passwords in a row never count as failures at all.
        for _ in range(PER_CLIENT.count * 3):
            assert (await _reserve(limiter, account, OWNER)).allowed
            await limiter.release_attempt(account, OWNER)
        assert await _counters(client, account, OWNER) == (None, 4)


async def test_release_never_goes_below_zero_or_recreates_a_counter(
        redis_target: RedisTarget) -> None:
    account = _account()
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter = RedisRateLimiter(client)
        await limiter.release_attempt(account, OWNER)  # nothing reserved: nothing happens
        assert await _counters(client, account, OWNER) == (None, None)
        await _reserve(limiter, account, OWNER)
        await limiter.release_attempt(account, OWNER)
        assert await _counters(client, account, OWNER) == (None, None)


async def test_the_lock_releases_when_its_window_ends(redis_target: RedisTarget) -> None:
    per_client = RateLimit(count=2, window_s=1)
    total = RateLimit(count=100, window_s=3600)
    account = _account()
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter = RedisRateLimiter(client)
        started = time.monotonic()
        for _ in range(2):
            assert (await _reserve(limiter, account, ATTACKER, per_client=per_client,
                                   total=total)).allowed
        refused = await _reserve(limiter, account, ATTACKER, per_client=per_client,
                                 total=total)
        assert (refused.allowed, refused.retry_after_s) == (False, 1)
        with anyio.fail_after(5):
            while True:
                decision = await _reserve(limiter, account, ATTACKER,
                                          per_client=per_client, total=total)
                if decision.allowed:
                    break
                await anyio.sleep(0.05)
        assert time.monotonic() - started >= per_client.window_s * 0.9
        assert decision.count == 1
        assert await _counters(client, account, ATTACKER) == (1, 3)


async def test_a_counter_left_without_expiry_gets_one(redis_target: RedisTarget) -> None:
    """A counter that lost its expiry (restored from a dump, set by hand) must not lock the
    account for ever: the next reservation gives it the window."""
    account = _account()
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter = RedisRateLimiter(client)
        key = redis_keys.login_failures(account, ATTACKER)
        await client.set(key, PER_CLIENT.count)
        refused = await _reserve(limiter, account, ATTACKER)
        assert not refused.allowed
        assert refused.retry_after_s == PER_CLIENT.window_s
        assert 0 < await client.pttl(key) <= PER_CLIENT.window_s * 1000


async def test_the_keys_of_one_account_share_a_slot(redis_target: RedisTarget) -> None:
    account = _account()
    keys = (redis_keys.login_failures(account, ATTACKER),
            redis_keys.login_failures(account, OWNER), redis_keys.login_failures_total(account))
    assert all(redis_keys.account_tag(account) in key for key in keys)
    assert redis_keys.account_tag(_account()) != redis_keys.account_tag(account)
    assert not any(account in key or ATTACKER in key for key in keys)  # no personal data
    async with _client(redis_target.url, redis_target.mode) as client:
        if isinstance(client, RedisCluster):
            assert len({await client.cluster_keyslot(key) for key in keys}) == 1


async def test_outage_is_unavailable_quickly(redis_target: RedisTarget) -> None:
    async with _client(_closed_port_url(redis_target.mode), redis_target.mode,
                       warm=False) as client:
        limiter = RedisRateLimiter(client)
        with anyio.fail_after(5):
            with pytest.raises(Unavailable) as caught:
                await _reserve(limiter, _account(), ATTACKER)
        assert caught.value.status == 503
        with anyio.fail_after(5):
            with pytest.raises(Unavailable):
                await limiter.release_attempt(_account(), ATTACKER)
