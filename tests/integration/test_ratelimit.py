"""authnode.shared.ratelimit against real Redis, single node and cluster (``redis_target``)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.asyncio.cluster import RedisCluster

from authnode.clients.redis import RedisClient, create_redis
from authnode.errors import RateLimited, Unavailable
from authnode.settings import RateLimit, Settings, load_settings
from authnode.shared import redis_keys
from authnode.shared.ratelimit import RateLimiter, RedisRateLimiter
from authnode.tuning import HostResources
from tests.services import RedisTarget

pytestmark = pytest.mark.anyio


def _settings(url: str, mode: str) -> Settings:
    return load_settings({"REDIS_URL": url, "REDIS_MODE": mode},
                         host=HostResources(cpus=2, memory_bytes=8 << 30))


@asynccontextmanager
async def _client(url: str, mode: str, *, warm: bool = True) -> AsyncIterator[RedisClient]:
    """A client as an instance has it. ``warm`` initializes a cluster client first: the
    lazy initialization of redis-py's async RedisCluster races when several commands
    start at once on a fresh client (a command can run twice, or fail with
    AttributeError), so the app must initialize it at startup too."""
    client = create_redis(_settings(url, mode))
    try:
        if warm and isinstance(client, RedisCluster):
            await client.initialize()
        yield client
    finally:
        await client.aclose()


def _subject() -> str:
    return f"subject-{uuid.uuid4()}"


def _closed_port_url(mode: str) -> str:
    ports = []
    for _ in range(2 if mode == "cluster" else 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
    return ",".join(f"redis://127.0.0.1:{port}" for port in ports)


async def test_counts_up_to_the_limit_then_refuses(redis_target: RedisTarget) -> None:
    limit = RateLimit(count=3, window_s=60)
    subject = _subject()
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter: RateLimiter = RedisRateLimiter(client)
        for expected in (1, 2, 3):
            decision = await limiter.hit("login", subject, limit)
            assert decision.allowed
            assert decision.count == expected
            assert decision.remaining == 3 - expected
            assert decision.retry_after_s == 0
        refused = await limiter.hit("login", subject, limit)
        assert not refused.allowed
        assert refused.count == 4
        assert refused.remaining == 0
        assert 0 < refused.retry_after_s <= limit.window_s

        with pytest.raises(RateLimited) as caught:
            await limiter.check("login", subject, limit)
        assert 0 < caught.value.retry_after_s <= limit.window_s
        assert caught.value.headers()["Retry-After"] == str(caught.value.retry_after_s)

        # The counter expires with the window; it never lingers without an expiry.
        ttl = await client.pttl(redis_keys.rate_limit("login", subject))
        assert 0 < ttl <= limit.window_s * 1000


async def test_limits_and_subjects_are_independent(redis_target: RedisTarget) -> None:
    limit = RateLimit(count=1, window_s=60)
    subject = _subject()
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter = RedisRateLimiter(client)
        assert (await limiter.hit("login", subject, limit)).allowed
        assert not (await limiter.hit("login", subject, limit)).allowed
        assert (await limiter.hit("register", subject, limit)).allowed
        assert (await limiter.hit("login", _subject(), limit)).allowed


async def test_window_releases_and_refusals_do_not_extend_it(redis_target: RedisTarget) -> None:
    limit = RateLimit(count=2, window_s=1)
    subject = _subject()
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter = RedisRateLimiter(client)
        started = time.monotonic()
        assert (await limiter.hit("login", subject, limit)).allowed
        assert (await limiter.hit("login", subject, limit)).allowed
        refused = await limiter.hit("login", subject, limit)
        assert not refused.allowed
        assert refused.retry_after_s == 1

        # Keep hammering: every refused hit counts, but the window that began with the
        # first event still ends on time and the subject starts afresh.
        with anyio.fail_after(5):
            while True:
                decision = await limiter.hit("login", subject, limit)
                if decision.allowed:
                    break
                await anyio.sleep(0.05)
        elapsed = time.monotonic() - started
        assert decision.count == 1
        assert elapsed >= limit.window_s * 0.9


async def test_two_instances_count_together(redis_target: RedisTarget) -> None:
    limit = RateLimit(count=20, window_s=60)
    subject = _subject()
    async with (_client(redis_target.url, redis_target.mode) as one,
                _client(redis_target.url, redis_target.mode) as two):
        instances = [RedisRateLimiter(one), RedisRateLimiter(two)]
        counts: list[int] = []

        async def hit(limiter: RedisRateLimiter) -> None:
            counts.append((await limiter.hit("login", subject, limit)).count)

        async with anyio.create_task_group() as group:
            for index in range(30):
                group.start_soon(hit, instances[index % 2])

        assert sorted(counts) == list(range(1, 31))  # atomic: no lost or double count


async def test_on_refused_is_called_with_the_limit_name(redis_target: RedisTarget) -> None:
    limit = RateLimit(count=1, window_s=60)
    subject = _subject()
    refused: list[str] = []
    async with _client(redis_target.url, redis_target.mode) as client:
        limiter = RedisRateLimiter(client, on_refused=refused.append)
        await limiter.hit("register_ip", subject, limit)
        assert refused == []
        await limiter.hit("register_ip", subject, limit)
        with pytest.raises(RateLimited):
            await limiter.check("register_ip", subject, limit)
        assert refused == ["register_ip", "register_ip"]


async def test_outage_is_unavailable_quickly(redis_target: RedisTarget) -> None:
    limit = RateLimit(count=1, window_s=60)
    async with _client(_closed_port_url(redis_target.mode), redis_target.mode,
                       warm=False) as client:
        limiter = RedisRateLimiter(client)
        with anyio.fail_after(5):
            with pytest.raises(Unavailable) as caught:
                await limiter.hit("login", _subject(), limit)
        assert caught.value.dependency == "redis"
        assert caught.value.status == 503
        with anyio.fail_after(5):
            with pytest.raises(Unavailable):
                await limiter.check("login", _subject(), limit)
