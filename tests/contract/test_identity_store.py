"""The IdentityStore contract: a provider's ``sub`` links to one user, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.identities import IdentityRepository
from authnode.repositories.memory import MemoryIdentityStore
from authnode.repositories.protocols import IdentityStore
from authnode.repositories.records import Identity
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio


async def _repository(mongo: MongoHandles) -> IdentityRepository:
    identities = IdentityRepository(mongo)
    await identities.ensure_indexes()
    return identities


@pytest.fixture
async def identities(side: str,
                     request: pytest.FixtureRequest) -> AsyncIterator[IdentityStore]:
    async with either(side, request, MemoryIdentityStore, _repository) as store:
        yield store


def _identity(user_id: str, subject: str = "sub-1", provider: str = "google",
              minutes: int = 0) -> Identity:
    return Identity(provider=provider, subject=subject, user_id=user_id,
                    email="ann@example.com", created_at=NOW + timedelta(minutes=minutes))


async def test_a_subject_links_to_one_user_of_concurrent_inserts(
        identities: IdentityStore) -> None:
    results = await asyncio.gather(*(identities.insert(_identity(f"user-{n}"))
                                     for n in range(5)))
    assert results.count(True) == 1
    found = await identities.by_subject("google", "sub-1")
    assert found is not None and found.user_id == f"user-{results.index(True)}"
    assert found.email == "ann@example.com" and found.created_at == NOW


async def test_the_same_subject_at_another_provider_is_another_identity(
        identities: IdentityStore) -> None:
    assert await identities.insert(_identity("u1", provider="google"))
    assert await identities.insert(_identity("u2", provider="entra"))
    assert await identities.by_subject("other", "sub-1") is None
    assert await identities.by_subject("google", "sub-2") is None
    found = await identities.by_subject("entra", "sub-1")
    assert found is not None and found.user_id == "u2"


async def test_a_users_identities_oldest_first_and_unlinking(
        identities: IdentityStore) -> None:
    second = _identity("u1", subject="b", minutes=1)
    first = _identity("u1", subject="a", provider="entra")
    await identities.insert(second)
    await identities.insert(first)
    await identities.insert(_identity("u2", subject="c"))
    assert [i.id for i in await identities.for_user("u1")] == [first.id, second.id]
    assert not await identities.delete("u2", first.id), "not theirs"
    assert await identities.delete("u1", first.id)
    assert not await identities.delete("u1", first.id)
    assert await identities.by_subject("entra", "a") is None
    assert await identities.insert(_identity("u3", subject="a", provider="entra")), \
        "an unlinked identity may be linked again"
    assert await identities.delete_for_user("u1") == 1
    assert await identities.for_user("u1") == []
    assert len(await identities.for_user("u2")) == 1
