"""The profile cache (authnode.shared.cache) against real Redis (both modes) and real FerretDB.

The loader is the real one (``UserRepository.by_id_for_display`` on FerretDB, shaped by
``public_user``) wrapped in a counter: counting calls of our own code shows how often
MongoDB is read, without mocking MongoDB. Each ``ProfileCache`` has its own Redis client
and its own MongoDB client, as one instance has. The HTTP side (a stopped FerretDB behind
a warm cache, a PATCH on one instance read on another) is in
tests/acceptance/test_scale_out.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from authnode.accounts.models import public_user
from authnode.clients.mongo import create_mongo
from authnode.clients.redis import connect_redis
from authnode.errors import Unavailable
from authnode.repositories.records import User
from authnode.repositories.users import UserRepository
from authnode.settings import Settings, load_settings
from authnode.shared.cache import ProfileCache
from authnode.tuning import HostResources
from tests.services import RedisCluster, RedisServer, RedisTarget, free_port

TTL_S = 300


def _settings(redis_url: str, redis_mode: str, mongo_uri: str) -> Settings:
    # A pool larger than the bursts below: redis-py fails a command at once when its pool
    # is exhausted (it does not wait), and the cache rightly treats that as "Redis down".
    return load_settings({"REDIS_URL": redis_url, "REDIS_MODE": redis_mode,
                          "MONGODB_URI": mongo_uri, "REDIS_MAX_CONNECTIONS": "256"},
                         host=HostResources(cpus=2, memory_bytes=8 << 30))


@dataclass
class Instance:
    cache: ProfileCache
    users: UserRepository
    loads: int = 0
    hits: int = 0
    misses: int = 0


@asynccontextmanager
async def _instance(settings: Settings) -> AsyncIterator[Instance]:
    redis = await connect_redis(settings)
    mongo = create_mongo(settings)
    users = UserRepository(mongo)
    await users.load_id_key()
    instance: Instance

    async def load(user_id: str) -> dict[str, Any] | None:
        instance.loads += 1
        found = await users.by_id_for_display(user_id)
        return public_user(found) if found is not None else None

    def hit() -> None:
        instance.hits += 1

    def miss() -> None:
        instance.misses += 1

    instance = Instance(ProfileCache(redis, load, ttl_s=TTL_S, tombstone_ttl_s=5,
                                     on_hit=hit, on_miss=miss),
                        users)
    try:
        yield instance
    finally:
        await mongo.close()
        await redis.aclose()


async def _new_user(users: UserRepository, name: str = "Ada") -> str:
    user_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    assert await users.create(User(
        id=user_id, email=f"{user_id}@example.com", name=name, password_hash="x",
        email_verified=True, disabled=False, credential_version=1, created_at=now,
        updated_at=now), now)
    return user_id


@pytest.mark.anyio
async def test_repeated_reads_do_not_touch_mongodb(redis_target: RedisTarget,
                                                   mongo_uri: str) -> None:
    settings = _settings(redis_target.url, redis_target.mode, mongo_uri)
    async with _instance(settings) as one:
        user_id = await _new_user(one.users)
        first = await one.cache.get(user_id)
        assert first is not None and first["name"] == "Ada"
        for _ in range(25):
            assert await one.cache.get(user_id) == first
        assert (one.loads, one.misses, one.hits) == (1, 1, 25)


@pytest.mark.anyio
async def test_concurrent_misses_read_mongodb_once_per_instance(
        redis_target: RedisTarget, mongo_uri: str) -> None:
    settings = _settings(redis_target.url, redis_target.mode, mongo_uri)
    async with _instance(settings) as a, _instance(settings) as b:
        user_id = await _new_user(a.users)
        results: list[dict[str, Any] | None] = []

        async def read(instance: Instance) -> None:
            results.append(await instance.cache.get(user_id))

        async with anyio.create_task_group() as tasks:
            for _ in range(100):
                tasks.start_soon(read, a)
        assert a.loads == 1 and a.misses >= 1
        assert len(results) == 100 and all(r == results[0] for r in results)

        # Two instances at once, on a cold entry: at most one read each.
        other = await _new_user(a.users, name="Grace")
        async with anyio.create_task_group() as tasks:
            for instance in (a, b) * 50:
                tasks.start_soon(instance.cache.get, other)
        assert a.loads - 1 <= 1 and b.loads <= 1 and (a.loads - 1) + b.loads >= 1


@pytest.mark.anyio
async def test_a_write_on_one_instance_is_read_on_another(redis_target: RedisTarget,
                                                          mongo_uri: str) -> None:
    settings = _settings(redis_target.url, redis_target.mode, mongo_uri)
    async with _instance(settings) as a, _instance(settings) as b:
        user_id = await _new_user(a.users)
        assert (await b.cache.get(user_id) or {})["name"] == "Ada"  # B's cache is warm
        # What authnode.accounts.profile.rename does on instance A:
        await a.cache.invalidate(user_id)
        await a.users.update_name(user_id, "Ada L.", datetime.now(UTC))
        assert (await b.cache.get(user_id) or {})["name"] == "Ada L."
        assert b.loads == 2


@asynccontextmanager
async def _stopped_redis(mode: str, folder: Path) -> AsyncIterator[RedisServer | RedisCluster]:
    """A Redis of our own (so stopping it disturbs no other test), running for now."""
    server: RedisServer | RedisCluster
    if mode == "single":
        server = RedisServer(free_port(), folder / "redis", name="redis-to-stop")
    else:
        server = RedisCluster(folder / "cluster", size=3, replicas=0)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["single", "cluster"])
async def test_redis_down_reads_fall_back_to_mongodb(mode: str, mongo_uri: str,
                                                     tmp_path: Path) -> None:
    async with _stopped_redis(mode, tmp_path) as server:
        settings = _settings(server.url, mode, mongo_uri)
        async with _instance(settings) as one:
            user_id = await _new_user(one.users)
            assert await one.cache.get(user_id) is not None
            assert await one.cache.get(user_id) is not None
            assert one.loads == 1  # the second read was a hit

            server.stop()
            with anyio.fail_after(15):
                for _ in range(3):
                    profile = await one.cache.get(user_id)
                    assert profile is not None and profile["name"] == "Ada"
            assert one.loads == 4  # every read now goes to MongoDB, and answers
            # A write cannot leave a stale entry behind: it is refused instead.
            with anyio.fail_after(15), pytest.raises(Unavailable):
                await one.cache.invalidate(user_id)
