"""authnode.shared.online against real Redis, single node and cluster (``redis_target``).

Each ``OnlineUsers`` built here has its own client, as an instance has: marks made by one
are counted by another.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from authnode.clients.redis import RedisClient, connect_redis
from authnode.errors import Unavailable
from authnode.settings import load_settings
from authnode.shared import redis_keys
from authnode.shared.online import (
    BUCKET_S,
    SHARDS,
    OnlineUsers,
    expire_at,
    minute_of,
    running,
    shard_of,
)
from authnode.tuning import HostResources
from tests.services import RedisCluster, RedisTarget

WINDOW_S = 300
HLL_STANDARD_ERROR = 0.0081


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def _client(url: str, mode: str) -> AsyncIterator[RedisClient]:
    settings = load_settings({"REDIS_URL": url, "REDIS_MODE": mode},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    client = await connect_redis(settings)
    try:
        yield client
    finally:
        await client.aclose()


def _users(count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


@pytest.mark.anyio
async def test_instances_count_the_same_distinct_users(redis_target: RedisTarget) -> None:
    clock = Clock()
    async with (_client(redis_target.url, redis_target.mode) as one,
                _client(redis_target.url, redis_target.mode) as two):
        a = OnlineUsers(one, window_s=WINDOW_S, clock=clock)
        b = OnlineUsers(two, window_s=WINDOW_S, clock=clock)
        users = _users(30)
        for user in users[:20]:
            a.mark(user)
        for user in users[10:]:  # 10 users active on both instances
            b.mark(user)
        assert await a.flush() == 20
        assert await b.flush() == 20
        assert await a.count() == 30
        assert await b.count() == 30

        clock.now += BUCKET_S  # next minute, same users again: still 30 distinct
        for user in users:
            a.mark(user)
        await a.flush()
        clock.now += 1.5  # past the count's reuse period
        assert await b.count() == 30


@pytest.mark.anyio
async def test_large_counts_stay_within_the_stated_error(redis_target: RedisTarget) -> None:
    clock = Clock()
    async with _client(redis_target.url, redis_target.mode) as client:
        online = OnlineUsers(client, window_s=WINDOW_S, clock=clock,
                             max_recent=100_000, max_pending=100_000)
        users = _users(20_000)
        for user in users:
            online.mark(user)
        assert await online.flush() == len(users)
        counted = await online.count()
    # 3 standard errors: a wrong answer here is a bug, not bad luck (p < 0.3 %).
    assert abs(counted - len(users)) <= 3 * HLL_STANDARD_ERROR * len(users), counted


@pytest.mark.anyio
async def test_the_window_forgets_old_minutes(redis_target: RedisTarget) -> None:
    clock = Clock()
    async with _client(redis_target.url, redis_target.mode) as client:
        online = OnlineUsers(client, window_s=WINDOW_S, clock=clock)
        old, recent = _users(5), _users(3)
        clock.now -= WINDOW_S + 2 * BUCKET_S  # active long ago
        for user in old:
            online.mark(user)
        await online.flush()
        clock.now += WINDOW_S + 2 * BUCKET_S
        for user in recent:
            online.mark(user)
        await online.flush()
        assert await online.count() == 3

        # The keys carry the expiry every instance computes for their minute.
        minute = minute_of(clock.now)
        key = redis_keys.online_shard(shard_of(recent[0]), minute)
        assert await client.execute_command("EXPIRETIME", key) == expire_at(minute, WINDOW_S)


@pytest.mark.anyio
async def test_shards_spread_over_the_cluster(redis_cluster: RedisCluster) -> None:
    """No single node takes every write: the shards' keys live on every primary."""
    minute = minute_of(Clock()())
    owners = {redis_cluster.primary_for_key(redis_keys.online_shard(shard, minute)).port
              for shard in range(SHARDS)}
    assert len(owners) == len(redis_cluster.primaries()) == 3


@pytest.mark.anyio
async def test_writes_reach_every_primary(redis_target: RedisTarget) -> None:
    async with _client(redis_target.url, redis_target.mode) as client:
        online = OnlineUsers(client, window_s=WINDOW_S)
        for user in _users(400):
            online.mark(user)
        await online.flush()
        if isinstance(client, AsyncRedisCluster):
            sizes = [await client.execute_command("DBSIZE", target_nodes=node)
                     for node in client.get_primaries()]
            assert len(sizes) == 3 and all(size > 0 for size in sizes), sizes
            assert sum(sizes) == SHARDS
        else:
            assert await client.dbsize() == SHARDS


def _refused_url(mode: str) -> str:
    ports = []
    for _ in range(2 if mode == "cluster" else 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
    return ",".join(f"redis://127.0.0.1:{port}" for port in ports)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["single", "cluster"])
async def test_redis_down_drops_marks_and_counts_fail_clearly(
        mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="authnode.shared.online")
    async with _client(_refused_url(mode), mode) as client:
        online = OnlineUsers(client, window_s=WINDOW_S)
        for user in _users(3):
            online.mark(user)  # never raises, never waits
        with anyio.fail_after(8):
            assert await online.flush() == 0
        assert online.dropped == 3 and online.pending == 0
        assert "online marks dropped" in caplog.text
        with anyio.fail_after(8), pytest.raises(Unavailable):
            await online.count()


@pytest.mark.anyio
async def test_running_flushes_in_the_background_and_on_exit(
        redis_target: RedisTarget) -> None:
    async with (_client(redis_target.url, redis_target.mode) as one,
                _client(redis_target.url, redis_target.mode) as two):
        reader = OnlineUsers(two, window_s=WINDOW_S)
        async with running(OnlineUsers(one, window_s=WINDOW_S)) as online:
            users = _users(4)
            for user in users[:2]:
                online.mark(user)
            with anyio.fail_after(5):  # the flusher sends within about a second
                while await reader._count_now(reader._clock()) < 2:
                    await anyio.sleep(0.05)
            for user in users[2:]:
                online.mark(user)
        # Leaving the block flushed the rest at once.
        assert await reader._count_now(reader._clock()) == 4
