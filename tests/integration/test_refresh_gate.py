"""A refresh reads the user from the profile cache, not from MongoDB: a disabled or deleted
account, and the other sessions of a password change, are refused through the
revocation cutoff in Redis, even when the cache still holds the profile and the request
that should have ended the sessions failed before it revoked them one by one.

The account flows run on the in-memory stores (tests/unit/accounts/_twins.py); the
revocation marks and the profile cache on a real Redis, single node and cluster.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from authnode.accounts import registration
from authnode.accounts.authentication import login, refresh
from authnode.accounts.models import IssuedTokens, public_user, utc
from authnode.accounts.moderation import set_disabled
from authnode.clients.redis import RedisClient, create_redis
from authnode.errors import InvalidToken
from authnode.shared import redis_keys
from authnode.tokens.refresh import parse_refresh_token
from tests.services import RedisTarget
from tests.unit.accounts._twins import Twins, settings, twins

pytestmark = pytest.mark.anyio
ADDRESS = "ada@example.com"
PASSWORD = "correct horse 1"


@pytest.fixture
async def redis(redis_target: RedisTarget) -> AsyncIterator[RedisClient]:
    client = create_redis(settings(REDIS_URL=redis_target.url, REDIS_MODE=redis_target.mode))
    try:
        if isinstance(client, RedisCluster):
            await client.initialize()
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def env(redis: RedisClient) -> Twins:
    env = await twins(redis)
    await registration.register(env.accounts, email=ADDRESS, password=PASSWORD, name="Ada",
                                ip="192.0.2.1")
    assert await env.deliver_all() == ["sent"]
    await registration.verify_email(env.accounts, token=env.link_tokens(ADDRESS)[-1])
    return env


async def _login(env: Twins) -> IssuedTokens:
    return await login(env.accounts, email=ADDRESS, password=PASSWORD, ip="192.0.2.1",
                       user_agent="test")


async def _refresh(env: Twins, token: str) -> IssuedTokens:
    return await refresh(env.accounts, refresh_token=token, ip="192.0.2.1")


async def _cache_stale_profile(env: Twins, redis: RedisClient, profile: dict[str, object],
                               ) -> None:
    """What a cache entry left behind would hold (e.g. a fill racing the write, or a
    Redis that lost the tombstone): the profile from before."""
    await redis.set(redis_keys.profile(str(profile["id"])), json.dumps(profile))


async def test_a_refresh_is_answered_from_the_cached_profile(env: Twins,
                                                             redis: RedisClient) -> None:
    issued = await _login(env)
    first = await _refresh(env, issued.refresh_token)  # a miss: read from the store
    assert first.user["email"] == ADDRESS and first.user["name"] == "Ada"
    assert await redis.get(redis_keys.profile(issued.user["id"])) is None, "no fill"
    # GET /v1/users/me fills the cache; the cache is what answers from then on: a name
    # only in the cache shows in the response.
    assert await env.accounts.profiles.get(issued.user["id"]) is not None
    await _cache_stale_profile(env, redis, {**first.user, "name": "From the cache"})
    second = await _refresh(env, first.refresh_token)
    assert second.user["name"] == "From the cache"


async def test_a_disabled_account_is_refused_though_its_profile_is_cached(
        env: Twins, redis: RedisClient) -> None:
    issued = await _login(env)
    profile = (await _refresh(env, issued.refresh_token)).user
    live = (await _refresh(env, (await _login(env)).refresh_token)).refresh_token
    env.clock.advance(1)
    # A disabling that failed after its cutoff and its MongoDB write, before it revoked
    # the sessions one by one.
    user_id = profile["id"]
    await env.accounts.revocations.revoke_user(user_id, env.clock())
    assert await env.accounts.users.set_disabled(user_id, True, env.accounts.now())
    await _cache_stale_profile(env, redis, profile)
    with pytest.raises(InvalidToken):
        await _refresh(env, live)
    session = await env.accounts.sessions.by_id(parse_refresh_token(live))
    assert session is not None and session.revoked_at is not None, "revocation finished"


async def test_a_complete_disabling_refuses_refreshes_and_enabling_allows_new_sessions(
        env: Twins, redis: RedisClient) -> None:
    issued = await _login(env)
    profile = (await _refresh(env, issued.refresh_token)).user
    env.clock.advance(1)
    await set_disabled(env.accounts, profile["id"], True)
    await _cache_stale_profile(env, redis, profile)
    with pytest.raises(InvalidToken):
        await _refresh(env, issued.refresh_token)
    env.clock.advance(1)
    await set_disabled(env.accounts, profile["id"], False)
    again = await _login(env)
    assert (await _refresh(env, again.refresh_token)).user["id"] == profile["id"]


async def test_a_deleted_account_is_refused_though_its_profile_is_cached(
        env: Twins, redis: RedisClient) -> None:
    issued = await _login(env)
    first = await _refresh(env, issued.refresh_token)
    env.clock.advance(1)
    # A deletion that wrote its cutoff and deleted the user, but not the sessions.
    user_id = first.user["id"]
    await env.accounts.revocations.revoke_user(user_id, env.clock())
    assert await env.accounts.users.delete(user_id)
    await _cache_stale_profile(env, redis, first.user)
    with pytest.raises(InvalidToken):
        await _refresh(env, first.refresh_token)


async def test_a_deleted_account_is_refused_when_neither_cutoff_nor_cache_is_left(
        env: Twins, redis: RedisClient) -> None:
    """Redis lost both (a failover): the cache misses, the user is read, and is gone."""
    issued = await _login(env)
    first = await _refresh(env, issued.refresh_token)
    assert await env.accounts.users.delete(first.user["id"])
    await redis.delete(redis_keys.profile(first.user["id"]))
    with pytest.raises(InvalidToken):
        await _refresh(env, first.refresh_token)


async def test_a_half_done_password_change_refuses_the_other_sessions_only(
        env: Twins, redis: RedisClient) -> None:
    changer, other = await _login(env), await _login(env)
    env.clock.advance(1)
    # change_password's writes up to the password itself; the revocation of the other
    # sessions one by one failed.
    user = await env.accounts.users.by_email(ADDRESS)
    assert user is not None
    cutoff = env.clock()
    await env.accounts.sessions.confirm_credentials(
        parse_refresh_token(changer.refresh_token), user.id, utc(cutoff))
    await env.accounts.revocations.revoke_user(user.id, cutoff)
    new_hash = await env.accounts.hasher.hash("another horse 2")
    assert await env.accounts.users.set_password(user.id, new_hash, utc(cutoff),
                                                 expected_hash=user.password_hash)
    await _cache_stale_profile(env, redis, public_user(user))
    with pytest.raises(InvalidToken):
        await _refresh(env, other.refresh_token)
    kept = await _refresh(env, changer.refresh_token)
    assert kept.user["id"] == user.id
