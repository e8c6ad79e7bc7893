"""authnode.shared.revocations against real Redis, single node and cluster (``redis_target``)."""

from __future__ import annotations

import math
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from authnode.clients.redis import RedisClient, create_redis
from authnode.errors import Unavailable
from authnode.settings import Settings, load_settings
from authnode.shared import redis_keys
from authnode.shared.revocations import MARK_EXTRA_S, Revocations, revoked_by_cutoff
from authnode.tuning import HostResources
from tests.services import RedisTarget

ACCESS_TTL_S = 900
REFRESH_TTL_S = 30 * 86400


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


def _closed_port_url(mode: str) -> str:
    ports = []
    for _ in range(2 if mode == "cluster" else 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
    return ",".join(f"redis://127.0.0.1:{port}" for port in ports)


def _ids() -> tuple[str, str]:
    return f"user-{uuid.uuid4().hex}", f"session-{uuid.uuid4().hex}"


# --------------------------------------------------------------------------- pure rule


def test_cutoff_rule_with_whole_second_iat() -> None:
    before = 1_700_000_100.5
    assert not revoked_by_cutoff(None, 1_700_000_000)
    assert revoked_by_cutoff(before, 1_700_000_099)
    assert revoked_by_cutoff(before, 1_700_000_100)  # same second: refused (fail closed)
    assert not revoked_by_cutoff(before, 1_700_000_101)
    assert revoked_by_cutoff(1_700_000_100.0, 1_700_000_100)  # a tie is refused


def test_cutoff_rule_prefers_the_session_creation_time() -> None:
    before = 1_700_000_100.5
    # New login in the same second, after the revocation: accepted.
    assert not revoked_by_cutoff(before, 1_700_000_100, session_created_at=before + 0.2)
    # A session that existed at the revocation stays dead even for a token it obtained
    # later (a refresh racing with logout-all).
    assert revoked_by_cutoff(before, 1_700_000_105, session_created_at=before - 0.2)
    assert revoked_by_cutoff(before, 1_700_000_105, session_created_at=before)


# --------------------------------------------------------------------------- real Redis


@pytest.mark.anyio
async def test_revoke_session_is_seen_by_every_instance(redis_target: RedisTarget) -> None:
    user, session = _ids()
    _, other_session = _ids()
    other_user, _ = _ids()
    now = int(time.time())
    async with (_client(redis_target.url, redis_target.mode) as one,
                _client(redis_target.url, redis_target.mode) as two):
        writer = Revocations(one, access_token_ttl_s=ACCESS_TTL_S,
                             refresh_token_ttl_s=REFRESH_TTL_S)
        reader = Revocations(two, access_token_ttl_s=ACCESS_TTL_S,
                             refresh_token_ttl_s=REFRESH_TTL_S)
        assert not await reader.is_revoked(user, session, now)

        await writer.revoke_session(user, session)

        assert await reader.is_revoked(user, session, now)
        assert await reader.is_revoked(user, session, now + 5)  # any token of the session
        assert not await reader.is_revoked(user, other_session, now)
        assert not await reader.is_revoked(other_user, session, now)
        ttl = await two.ttl(redis_keys.revoked_session(user, session))
        assert ACCESS_TTL_S < ttl <= ACCESS_TTL_S + MARK_EXTRA_S


@pytest.mark.anyio
async def test_revoke_user_refuses_older_tokens_and_accepts_newer(
    redis_target: RedisTarget,
) -> None:
    user, session = _ids()
    other_user, _ = _ids()
    async with (_client(redis_target.url, redis_target.mode) as one,
                _client(redis_target.url, redis_target.mode) as two):
        writer = Revocations(one, access_token_ttl_s=ACCESS_TTL_S,
                             refresh_token_ttl_s=REFRESH_TTL_S)
        reader = Revocations(two, access_token_ttl_s=ACCESS_TTL_S,
                             refresh_token_ttl_s=REFRESH_TTL_S)
        issued_earlier = int(time.time()) - 30
        assert not await reader.is_revoked(user, session, issued_earlier)

        before = time.time()
        in_force = await writer.revoke_user(user, before)
        assert in_force == before  # stored with its sub-second part, exactly

        second = math.floor(before)
        assert await reader.is_revoked(user, session, issued_earlier)
        assert await reader.is_revoked(user, session, second)  # same second: refused
        assert not await reader.is_revoked(user, session, second + 1)  # a later token
        assert not await reader.is_revoked(other_user, session, issued_earlier)
        # A new login right after logout-all, in the same second, works when the caller
        # gives the session's creation time...
        new_session = f"session-{uuid.uuid4().hex}"
        assert not await reader.is_revoked(user, new_session, second,
                                           session_created_at=before + 0.001)
        # ...and a session that existed at the revocation stays out, whatever its iat.
        assert await reader.is_revoked(user, session, second + 5,
                                       session_created_at=before - 1.0)

        # As long as a refresh token could live: refreshes read it (refresh_gate).
        ttl = await two.ttl(redis_keys.revoked_before(user))
        assert REFRESH_TTL_S < ttl <= REFRESH_TTL_S + MARK_EXTRA_S


@pytest.mark.anyio
async def test_revoke_user_keeps_the_latest_cutoff(redis_target: RedisTarget) -> None:
    user, session = _ids()
    async with _client(redis_target.url, redis_target.mode) as client:
        revocations = Revocations(client, access_token_ttl_s=ACCESS_TTL_S,
                                  refresh_token_ttl_s=REFRESH_TTL_S)
        now = time.time()
        assert await revocations.revoke_user(user, now + 10.25) == now + 10.25
        assert await revocations.revoke_user(user, now) == now + 10.25  # earlier loses
        assert await revocations.is_revoked(user, session, math.floor(now) + 5)
        assert await revocations.revoke_user(user, now + 20.5) == now + 20.5
        assert await revocations.is_revoked(user, session, math.floor(now) + 15)

        with pytest.raises(ValueError):
            await revocations.revoke_user(user, math.nan)


@pytest.mark.anyio
async def test_a_cutoff_is_lifted_only_by_its_writer(redis_target: RedisTarget) -> None:
    """A password change lifts its own cutoff when done; a later cutoff written meanwhile
    (another change, a disabled account) stays in force."""
    user, session = _ids()
    async with _client(redis_target.url, redis_target.mode) as client:
        revocations = Revocations(client, access_token_ttl_s=ACCESS_TTL_S,
                                  refresh_token_ttl_s=REFRESH_TTL_S)
        now = time.time()
        await revocations.revoke_user(user, now)
        await revocations.revoke_user(user, now + 0.5)
        await revocations.lift_user_cutoff(user, only=now)
        assert await revocations.is_revoked(user, session, math.floor(now)), "lifted a later one"
        await revocations.lift_user_cutoff(user, only=now + 0.5)
        assert not await revocations.is_revoked(user, session, math.floor(now))


@pytest.mark.anyio
async def test_a_session_mark_is_seen_by_itself(redis_target: RedisTarget) -> None:
    user, session = _ids()
    async with _client(redis_target.url, redis_target.mode) as client:
        revocations = Revocations(client, access_token_ttl_s=ACCESS_TTL_S,
                                  refresh_token_ttl_s=REFRESH_TTL_S)
        assert not await revocations.is_session_marked(user, session)
        await revocations.revoke_user(user, time.time())  # a cutoff is not a session mark
        assert not await revocations.is_session_marked(user, session)
        await revocations.revoke_sessions(user, [session])
        assert await revocations.is_session_marked(user, session)


@pytest.mark.anyio
async def test_is_revoked_keys_share_one_slot(redis_target: RedisTarget) -> None:
    user, session = _ids()
    keys = [redis_keys.revoked_session(user, session), redis_keys.revoked_before(user)]
    assert key_slot(keys[0].encode()) == key_slot(keys[1].encode())
    if redis_target.mode != "cluster":
        return
    async with _client(redis_target.url, redis_target.mode) as client:
        assert isinstance(client, RedisCluster)
        slots = {int(await client.cluster_keyslot(key)) for key in keys}
        assert slots == {key_slot(keys[0].encode())}
        # And the one MGET of is_revoked is accepted by the cluster.
        revocations = Revocations(client, access_token_ttl_s=ACCESS_TTL_S,
                                  refresh_token_ttl_s=REFRESH_TTL_S)
        await revocations.revoke_session(user, session)
        assert await revocations.is_revoked(user, session, int(time.time()))


@pytest.mark.anyio
async def test_outage_fails_closed_quickly(redis_target: RedisTarget) -> None:
    user, session = _ids()
    async with _client(_closed_port_url(redis_target.mode), redis_target.mode,
                       warm=False) as client:
        revocations = Revocations(client, access_token_ttl_s=ACCESS_TTL_S,
                                  refresh_token_ttl_s=REFRESH_TTL_S)
        with anyio.fail_after(5):
            with pytest.raises(Unavailable) as caught:
                await revocations.is_revoked(user, session, int(time.time()))
        assert caught.value.dependency == "redis"
        with anyio.fail_after(5):
            with pytest.raises(Unavailable):
                await revocations.revoke_session(user, session)
        with anyio.fail_after(5):
            with pytest.raises(Unavailable):
                await revocations.revoke_user(user, time.time())
