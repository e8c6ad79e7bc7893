"""The refresh-rotation race rules of authnode.accounts.authentication, on the in-memory
stores (tests/unit/accounts/_twins.py) and a real Redis for the revocation marks that a
refresh reads: concurrent refreshes with one token make one rotation and get the same
successor; a replayed token ends the session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from authnode.accounts import registration
from authnode.accounts.authentication import login, refresh
from authnode.accounts.models import IssuedTokens
from authnode.clients.redis import RedisClient, create_redis
from authnode.errors import InvalidToken
from authnode.tokens.refresh import hash_refresh_token, new_refresh_token, parse_refresh_token
from tests.services.redis_server import RedisServer
from tests.unit.accounts._twins import Twins, settings, twins

pytestmark = pytest.mark.anyio
ADDRESS = "ada@example.com"
PASSWORD = "correct horse 1"
GRACE_S = 10


@pytest.fixture
async def redis(redis_single: RedisServer) -> AsyncIterator[RedisClient]:
    redis_single.flushall()
    client = create_redis(settings(REDIS_URL=redis_single.url))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def signed_in(redis: RedisClient) -> tuple[Twins, IssuedTokens]:
    env = await twins(redis, REFRESH_REUSE_GRACE_S=str(GRACE_S))
    await registration.register(env.accounts, email=ADDRESS, password=PASSWORD, name=None,
                                ip="192.0.2.1")
    assert await env.deliver_all() == ["sent"]
    await registration.verify_email(env.accounts, token=env.link_tokens(ADDRESS)[-1])
    issued = await login(env.accounts, email=ADDRESS, password=PASSWORD, ip="192.0.2.1",
                         user_agent="test")
    return env, issued


async def _refresh(env: Twins, token: str) -> str:
    return (await refresh(env.accounts, refresh_token=token, ip="192.0.2.1")).refresh_token


async def test_concurrent_refreshes_rotate_once_and_share_the_successor(
        signed_in: tuple[Twins, IssuedTokens]) -> None:
    env, issued = signed_in
    successors: list[str] = []

    async def one() -> None:
        successors.append(await _refresh(env, issued.refresh_token))

    async with anyio.create_task_group() as refreshes:
        for _ in range(3):
            refreshes.start_soon(one)
    assert len(successors) == 3 and len(set(successors)) == 1
    session = await env.accounts.sessions.by_id(parse_refresh_token(successors[0]),
                                                with_spent=True)
    assert session is not None and session.spent is not None and len(session.spent) == 1
    assert session.refresh_hash == hash_refresh_token(successors[0])
    assert await _refresh(env, successors[0])  # the successor is the live token


async def test_the_replaced_token_after_the_grace_period_ends_the_session(
        signed_in: tuple[Twins, IssuedTokens]) -> None:
    env, issued = signed_in
    successor = await _refresh(env, issued.refresh_token)
    env.clock.advance(GRACE_S + 1)
    with pytest.raises(InvalidToken):
        await _refresh(env, issued.refresh_token)
    with pytest.raises(InvalidToken):
        await _refresh(env, successor)  # the session ended: its live token too
    session_id = parse_refresh_token(successor)
    assert await env.accounts.sessions.live_ids_for_user(issued.user["id"],
                                                         env.accounts.now()) == []
    assert await env.accounts.revocations.is_session_marked(issued.user["id"], session_id)


async def test_an_older_token_ends_the_session_even_within_the_grace_period(
        signed_in: tuple[Twins, IssuedTokens]) -> None:
    env, issued = signed_in
    second = await _refresh(env, issued.refresh_token)
    third = await _refresh(env, second)
    with pytest.raises(InvalidToken):
        await _refresh(env, issued.refresh_token)  # two rotations back: a replay
    with pytest.raises(InvalidToken):
        await _refresh(env, third)


async def test_a_made_up_token_of_the_session_changes_nothing(
        signed_in: tuple[Twins, IssuedTokens]) -> None:
    env, issued = signed_in
    session_id = parse_refresh_token(issued.refresh_token)
    forged = new_refresh_token(session_id)
    with pytest.raises(InvalidToken):
        await _refresh(env, forged)
    assert await _refresh(env, issued.refresh_token)  # the session lives on
