"""authnode.mfa.challenges against real Redis, single node and cluster: the mfa_token's
attempt limit and single use, the TOTP replay guard and single-use WebAuthn challenges,
each seen by two instances (two clients) and raced."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.asyncio.cluster import RedisCluster

from authnode.clients.redis import RedisClient, create_redis
from authnode.mfa.challenges import (
    MAX_MFA_ATTEMPTS,
    MFA_TOKEN_TTL_S,
    TOTP_USED_TTL_S,
    LoginState,
    MfaChallenges,
    PendingLogin,
)
from authnode.settings import load_settings
from authnode.shared import redis_keys
from authnode.tuning import HostResources
from tests.services import RedisTarget

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _instances(target: RedisTarget) -> AsyncIterator[tuple[MfaChallenges, MfaChallenges,
                                                                  RedisClient]]:
    settings = load_settings({"REDIS_URL": target.url, "REDIS_MODE": target.mode},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    one, two = create_redis(settings), create_redis(settings)
    try:
        for client in (one, two):
            if isinstance(client, RedisCluster):
                await client.initialize()
        yield MfaChallenges(one), MfaChallenges(two), one
    finally:
        await one.aclose()
        await two.aclose()


def _login() -> PendingLogin:
    return PendingLogin(user_id=uuid.uuid4().hex, amr=("pwd",))


async def test_a_pending_login_is_seen_by_another_instance_and_expires(
        redis_target: RedisTarget) -> None:
    async with _instances(redis_target) as (one, two, redis):
        login = _login()
        token = await one.start_login(login)
        assert await two.peek(token) == login
        assert await two.peek(token + "x") == LoginState.UNKNOWN
        ttl = await redis.ttl(redis_keys.mfa_pending(hashlib.sha256(token.encode()).hexdigest()))
        assert MFA_TOKEN_TTL_S - 5 <= ttl <= MFA_TOKEN_TTL_S


async def test_wrong_codes_lock_the_login_at_the_limit(redis_target: RedisTarget) -> None:
    async with _instances(redis_target) as (one, two, _):
        token = await one.start_login(_login())
        counts = []
        for instance in [one, two] * 3:
            counts.append(await instance.record_failure(token))
        assert counts[:MAX_MFA_ATTEMPTS] == list(range(1, MAX_MFA_ATTEMPTS + 1))
        assert await one.peek(token) == LoginState.LOCKED
        assert await two.take(token) == LoginState.LOCKED  # a right code cannot finish it
        assert await one.record_failure("never-issued") == 0


async def test_of_many_requests_finishing_one_login_exactly_one_wins(
        redis_target: RedisTarget) -> None:
    async with _instances(redis_target) as (one, two, _):
        login = _login()
        token = await one.start_login(login)
        results: list[object] = []

        async def finish(instance: MfaChallenges) -> None:
            results.append(await instance.take(token))

        async with anyio.create_task_group() as tasks:
            for instance in [one, two] * 10:
                tasks.start_soon(finish, instance)
        assert results.count(login) == 1
        assert results.count(LoginState.UNKNOWN) == 19
        assert await one.peek(token) == LoginState.UNKNOWN


async def test_a_totp_step_is_accepted_once_across_instances(
        redis_target: RedisTarget) -> None:
    async with _instances(redis_target) as (one, two, redis):
        user = uuid.uuid4().hex
        wins: list[bool] = []

        async def claim(instance: MfaChallenges) -> None:
            wins.append(await instance.claim_totp_step(user, 60_000_000))

        async with anyio.create_task_group() as tasks:
            for instance in [one, two] * 5:
                tasks.start_soon(claim, instance)
        assert wins.count(True) == 1
        assert await one.claim_totp_step(user, 60_000_001)  # the next step is its own
        assert await two.claim_totp_step(uuid.uuid4().hex, 60_000_000)  # another user's
        ttl = await redis.ttl(redis_keys.totp_used(user, 60_000_000))
        assert TOTP_USED_TTL_S - 5 <= ttl <= TOTP_USED_TTL_S


async def test_a_webauthn_challenge_is_taken_once(redis_target: RedisTarget) -> None:
    async with _instances(redis_target) as (one, two, _):
        challenge = uuid.uuid4().bytes * 4
        await one.put_challenge(challenge, {"purpose": "register", "user_id": "u1"})
        taken = [await two.take_challenge(challenge), await one.take_challenge(challenge)]
        assert taken == [{"purpose": "register", "user_id": "u1"}, None]
        assert await one.take_challenge(b"unknown") is None
