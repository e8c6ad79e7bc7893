"""authnode.repositories.sessions against FerretDB: rotation, its guard, and the bounded
memory of spent refresh tokens."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from authnode.clients.mongo import MongoHandles, create_mongo
from authnode.repositories.records import Session, spent_prefix
from authnode.repositories.sessions import (
    SPENT_KEPT_AFTER_TRIM,
    SPENT_KEPT_MAX,
    SessionRepository,
)
from authnode.repositories.spend_guards import COLLECTION as GUARDS
from authnode.settings import load_settings
from authnode.tuning import HostResources

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

SECRET_KEY = "kAcnsaTZqQsDEHhvXU86dqIl3s9dUKrBlVixMWudcNYsdyi3HxEa0r45fpQcXg7V"


def _hash(n: int) -> str:
    return hashlib.sha256(f"token {n}".encode()).hexdigest()


def _session(session_id: str, refresh_hash: str) -> Session:
    return Session(
        id=session_id, user_id="u1", refresh_hash=refresh_hash, previous_hash=None,
        rotation_nonce=None, rotated_at=None, spent=(), created_at=NOW, last_used_at=NOW,
        expires_at=NOW + timedelta(days=30), user_agent="", ip="127.0.0.1", revoked_at=None)


@pytest.fixture
async def sessions(mongo_uri: str) -> AsyncIterator[SessionRepository]:
    settings = load_settings({"MONGODB_URI": mongo_uri, "SECRET_KEY": SECRET_KEY},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    handles: MongoHandles = create_mongo(settings)
    try:
        repository = SessionRepository(handles)
        await repository.ensure_indexes()
        await repository.insert(_session("s1", _hash(0)))
        yield repository
    finally:
        await handles.close()


@pytest.mark.anyio
async def test_a_token_is_claimed_once(sessions: SessionRepository) -> None:
    assert await sessions.claim_rotation("s1", _hash(0), NOW) == "u1"
    assert await sessions.claim_rotation("s1", _hash(0), NOW) is None
    rotated = await sessions.rotate("s1", _hash(0), new_hash=_hash(1), nonce="n", now=NOW)
    assert rotated is not None
    assert await sessions.claim_rotation("s1", _hash(1), NOW) == "u1"


async def _guard_count(sessions: SessionRepository) -> int:
    guards = sessions._fresh.database[GUARDS]
    return await guards.count_documents({})


@pytest.mark.anyio
async def test_only_the_live_hash_of_a_live_session_gets_a_guard(
        sessions: SessionRepository) -> None:
    """Anyone can send a refresh token: one that is not the session's live token (made
    up, of an unknown session, already rotated, of a revoked or expired session) must
    cause no write."""
    rotated = await sessions.rotate("s1", _hash(0), new_hash=_hash(1), nonce="n", now=NOW)
    assert rotated is not None
    await sessions.insert(_session("s2", _hash(20)))
    assert await sessions.revoke("s2", NOW)
    before = await _guard_count(sessions)

    refused = {
        "made-up token of a real session": ("s1", _hash(99)),
        "token of an unknown session": ("nobody", _hash(0)),
        "the live hash, under another session id": ("s2", _hash(1)),
        "the just-replaced token": ("s1", _hash(0)),
        "the live token of a revoked session": ("s2", _hash(20)),
    }
    for why, (session_id, token_hash) in refused.items():
        assert await sessions.claim_rotation(session_id, token_hash, NOW) is None, why
    expired_at = NOW + timedelta(days=31)
    assert await sessions.claim_rotation("s1", _hash(1), expired_at) is None, "expired"
    assert await _guard_count(sessions) == before, "a refused claim wrote a spend guard"

    assert await sessions.claim_rotation("s1", _hash(1), NOW) == "u1"
    assert await _guard_count(sessions) == before + 1


@pytest.mark.anyio
async def test_rotation_needs_the_live_hash_and_remembers_the_spent_one(
        sessions: SessionRepository) -> None:
    assert await sessions.rotate("s1", _hash(9), new_hash=_hash(1), nonce="n", now=NOW) is None
    rotated = await sessions.rotate("s1", _hash(0), new_hash=_hash(1), nonce="n", now=NOW)
    assert rotated is not None and rotated.refresh_hash == _hash(1)
    assert rotated.previous_hash == _hash(0)
    assert rotated.spent == (spent_prefix(_hash(0)),)
    listed = await sessions.by_id("s1")
    assert listed is not None and listed.spent is None


@pytest.mark.anyio
async def test_spent_tokens_are_trimmed_to_the_newest(sessions: SessionRepository) -> None:
    for n in range(SPENT_KEPT_MAX + 1):
        rotated = await sessions.rotate("s1", _hash(n), new_hash=_hash(n + 1), nonce="n",
                                        now=NOW)
        assert rotated is not None, n
    stored = await sessions.by_id("s1", with_spent=True)
    assert stored is not None
    last = SPENT_KEPT_MAX  # the hash rotated away last
    assert stored.spent == tuple(spent_prefix(_hash(n))
                                 for n in range(last - SPENT_KEPT_AFTER_TRIM + 1, last + 1))
