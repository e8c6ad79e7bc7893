"""The SessionStore contract: one rotation per live token, spent tokens remembered,
revocation and listing rules, expiry by the caller's clock."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.memory import MemorySessionStore
from authnode.repositories.protocols import SessionStore
from authnode.repositories.records import Session, spent_prefix
from authnode.repositories.sessions import (
    SPENT_KEPT_AFTER_TRIM,
    SPENT_KEPT_MAX,
    SessionRepository,
)
from authnode.repositories.spend_guards import GUARD_TTL
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio
TTL = timedelta(days=30)
SOON = NOW + timedelta(seconds=10)


async def _repository(mongo: MongoHandles) -> SessionRepository:
    sessions = SessionRepository(mongo)
    await sessions.ensure_indexes()
    return sessions


@pytest.fixture
async def sessions(side: str, request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    async with either(side, request, MemorySessionStore, _repository) as store:
        yield store


def _hash(n: int) -> str:
    return hashlib.sha256(f"token {n}".encode()).hexdigest()


def _session(session_id: str = "s1", user_id: str = "u1", *, refresh: int = 0,
             **fields: object) -> Session:
    session = Session(
        id=session_id, user_id=user_id, refresh_hash=_hash(refresh), previous_hash=None,
        rotation_nonce=None, rotated_at=None, spent=(), created_at=NOW, last_used_at=NOW,
        expires_at=NOW + TTL, user_agent="test agent", ip="192.0.2.1", revoked_at=None)
    return dataclasses.replace(session, **fields)


async def test_a_session_is_read_with_or_without_its_spent_tokens(
        sessions: SessionStore) -> None:
    session = _session()
    await sessions.insert(session)
    assert await sessions.by_id("s1", with_spent=True) == session
    assert await sessions.by_id("s1") == dataclasses.replace(session, spent=None)
    assert await sessions.by_id("nope") is None


async def test_a_live_token_is_claimed_by_one_caller(sessions: SessionStore) -> None:
    await sessions.insert(_session())
    claims = await asyncio.gather(*(sessions.claim_rotation("s1", _hash(0), NOW)
                                    for _ in range(4)))
    assert claims.count("u1") == 1 and claims.count(None) == 3
    assert await sessions.claim_rotation("s1", _hash(0), NOW) is None


async def test_only_the_live_token_of_a_live_session_is_claimed(
        sessions: SessionStore) -> None:
    await sessions.insert(_session())
    await sessions.insert(_session("s2", refresh=20))
    assert await sessions.revoke("s2", NOW)
    assert await sessions.claim_rotation("s1", _hash(99), NOW) is None
    assert await sessions.claim_rotation("nobody", _hash(0), NOW) is None
    assert await sessions.claim_rotation("s2", _hash(20), NOW) is None
    assert await sessions.claim_rotation("s1", _hash(0), NOW + TTL) is None
    assert await sessions.claim_rotation("s1", _hash(0), NOW) == "u1"


async def test_rotation_swaps_the_live_hash_and_remembers_the_spent_one(
        sessions: SessionStore) -> None:
    """Sequentially: two concurrent rotations may both pass on FerretDB v1 (its
    findAndModify is not atomic), which is why a caller claims the token first."""
    session = _session()
    await sessions.insert(session)
    assert await sessions.rotate("s1", _hash(9), new_hash=_hash(1), nonce="n", now=SOON) is None
    rotated = await sessions.rotate("s1", _hash(0), new_hash=_hash(1), nonce="n1", now=SOON)
    assert rotated == dataclasses.replace(
        session, refresh_hash=_hash(1), previous_hash=_hash(0), rotation_nonce="n1",
        rotated_at=SOON, last_used_at=SOON, spent=(spent_prefix(_hash(0)),))
    assert await sessions.rotate("s1", _hash(0), new_hash=_hash(2), nonce="n2",
                                 now=SOON) is None, "no longer the live hash"
    assert await sessions.by_id("s1", with_spent=True) == rotated
    assert rotated.spent_earlier(_hash(0)) and not rotated.spent_earlier(_hash(1))
    assert await sessions.rotate("s1", _hash(1), new_hash=_hash(3), nonce="x",
                                 now=NOW + TTL) is None, "expired"
    assert await sessions.revoke("s1", SOON)
    assert await sessions.rotate("s1", _hash(1), new_hash=_hash(3), nonce="x",
                                 now=SOON) is None, "revoked"


async def test_of_concurrent_refreshes_one_claims_and_rotates(sessions: SessionStore) -> None:
    """The domain's sequence: claim, and only the claimant rotates."""
    await sessions.insert(_session())

    async def refresh(n: int) -> Session | None:
        if await sessions.claim_rotation("s1", _hash(0), SOON) is None:
            return None
        return await sessions.rotate("s1", _hash(0), new_hash=_hash(n), nonce=f"n{n}",
                                     now=SOON)

    results = await asyncio.gather(*(refresh(n) for n in range(1, 5)))
    winners = [rotated for rotated in results if rotated is not None]
    assert len(winners) == 1
    assert await sessions.by_id("s1", with_spent=True) == winners[0]


async def test_spent_tokens_are_trimmed_to_the_newest(sessions: SessionStore) -> None:
    await sessions.insert(_session())
    for n in range(SPENT_KEPT_MAX + 1):
        rotated = await sessions.rotate("s1", _hash(n), new_hash=_hash(n + 1), nonce="n",
                                        now=NOW)
        assert rotated is not None, n
    assert rotated.spent is not None and len(rotated.spent) == SPENT_KEPT_MAX + 1
    stored = await sessions.by_id("s1", with_spent=True)
    last = SPENT_KEPT_MAX  # the hash rotated away last
    assert stored is not None and stored.spent == tuple(
        spent_prefix(_hash(n)) for n in range(last - SPENT_KEPT_AFTER_TRIM + 1, last + 1))


async def test_credentials_are_confirmed_only_on_the_users_unrevoked_session(
        sessions: SessionStore) -> None:
    await sessions.insert(_session())
    await sessions.insert(_session("s2"))
    await sessions.confirm_credentials("s1", "someone else", SOON)
    assert await sessions.revoke("s2", NOW)
    await sessions.confirm_credentials("s2", "u1", SOON)
    for session_id in ("s1", "s2"):
        found = await sessions.by_id(session_id)
        assert found is not None and found.credentials_at is None
    await sessions.confirm_credentials("s1", "u1", SOON)
    found = await sessions.by_id("s1")
    assert found is not None and found.credentials_at == SOON


async def test_reauthentication_is_recorded_only_on_the_users_live_session(
        sessions: SessionStore) -> None:
    await sessions.insert(_session())
    await sessions.insert(_session("s2"))
    found = await sessions.by_id("s1")
    assert found is not None and found.amr == ("pwd",) and found.auth_time is None
    assert found.authenticated_at == found.created_at
    assert not await sessions.reauthenticated("s1", "someone else", ("pwd", "otp"), SOON)
    assert await sessions.revoke("s2", NOW)
    assert not await sessions.reauthenticated("s2", "u1", ("pwd", "otp"), SOON)
    assert await sessions.reauthenticated("s1", "u1", ("pwd", "otp"), SOON)
    found = await sessions.by_id("s1")
    assert found is not None and found.amr == ("pwd", "otp") and found.auth_time == SOON
    assert found.authenticated_at == SOON


async def test_touch_records_the_last_use(sessions: SessionStore) -> None:
    await sessions.insert(_session())
    await sessions.touch("s1", SOON)
    await sessions.touch("nobody", SOON)
    found = await sessions.by_id("s1")
    assert found is not None and found.last_used_at == SOON


async def test_a_session_is_revoked_once_and_only_by_its_user(sessions: SessionStore) -> None:
    await sessions.insert(_session())
    assert not await sessions.revoke("s1", SOON, user_id="u2")
    assert not await sessions.revoke("nobody", SOON)
    assert await sessions.revoke("s1", SOON, user_id="u1")
    assert not await sessions.revoke("s1", SOON + TTL)
    found = await sessions.by_id("s1")
    assert found is not None and found.revoked_at == SOON


async def test_revoking_all_but_one(sessions: SessionStore) -> None:
    for session_id in ("a", "b", "c"):
        await sessions.insert(_session(session_id))
    await sessions.insert(_session("other", "u2"))
    assert await sessions.revoke("a", NOW)
    assert await sessions.revoke_all("u1", SOON, except_session="c") == 1
    assert await sessions.live_ids_for_user("u1", SOON) == ["c"]
    assert await sessions.revoke_all("u1", SOON) == 1
    assert await sessions.live_ids_for_user("u1", SOON) == []
    assert await sessions.live_ids_for_user("u2", SOON) == ["other"]


async def test_listings_show_live_sessions_newest_first(sessions: SessionStore) -> None:
    for n, session_id in enumerate(("old", "new", "middle", "revoked", "newest")):
        created = NOW + timedelta(minutes={"old": 0, "middle": 1}.get(session_id, 2 + n))
        await sessions.insert(_session(session_id, created_at=created,
                                       expires_at=created + timedelta(hours=1)))
    await sessions.insert(_session("theirs", "u2"))
    assert await sessions.revoke("revoked", NOW)
    later = NOW + timedelta(hours=1, minutes=3)  # "new" expires at 1:03, "newest" at 1:06
    await sessions.insert(_session("long", created_at=NOW - timedelta(hours=1)))
    listed = await sessions.active_for_user("u1", SOON)
    assert [s.id for s in listed] == ["newest", "new", "middle", "old", "long"]
    assert all(session.spent is None for session in listed)
    assert sorted(await sessions.live_ids_for_user("u1", SOON)) == sorted(
        ["newest", "new", "middle", "old", "long"])
    assert [s.id for s in await sessions.active_for_user("u1", later)] == ["newest", "long"]


async def test_the_sessions_to_mark_include_the_recently_revoked(
        sessions: SessionStore) -> None:
    for session_id in ("live", "revoked long ago", "revoked lately"):
        await sessions.insert(_session(session_id))
    await sessions.insert(_session("expired", expires_at=NOW + timedelta(hours=1)))
    await sessions.insert(_session("theirs", "u2"))
    assert await sessions.revoke("revoked long ago", NOW)
    assert await sessions.revoke("revoked lately", NOW + timedelta(hours=2))
    marked = await sessions.ids_to_mark("u1", NOW + timedelta(hours=3),
                                        revoked_since=NOW + timedelta(hours=1))
    assert sorted(marked) == ["live", "revoked lately"]


async def test_deleting_a_users_sessions(sessions: SessionStore) -> None:
    await sessions.insert(_session("mine"))
    await sessions.insert(_session("theirs", "u2"))
    await sessions.delete_for_user("u1")
    assert await sessions.by_id("mine") is None
    assert await sessions.by_id("theirs") is not None


async def test_purge_deletes_expired_and_long_revoked_sessions_and_old_guards(
        sessions: SessionStore) -> None:
    await sessions.insert(_session("expired", expires_at=NOW + timedelta(hours=1)))
    await sessions.insert(_session("revoked long ago"))
    await sessions.insert(_session("revoked lately", refresh=1))
    await sessions.insert(_session("live", refresh=2))
    assert await sessions.revoke("revoked long ago", NOW)
    assert await sessions.revoke("revoked lately", NOW + timedelta(days=2))
    assert await sessions.claim_rotation("live", _hash(2), NOW) == "u1"  # one guard
    purge_at = NOW + timedelta(days=2)
    assert await sessions.purge(purge_at, revoked_before=NOW + timedelta(days=1)) == 3
    assert await sessions.by_id("expired") is None
    assert await sessions.by_id("revoked long ago") is None
    assert await sessions.by_id("revoked lately") is not None
    assert await sessions.purge(purge_at, revoked_before=NOW + timedelta(days=1)) == 0
    # The guard is gone: the token can be claimed again (had it not been rotated).
    assert await sessions.claim_rotation("live", _hash(2), purge_at) == "u1"
    assert await sessions.purge(purge_at + GUARD_TTL - timedelta(seconds=1),
                                revoked_before=NOW) == 0
