"""The SpendGuardStore contract: the first claim of a key wins until the guard expires."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.memory import MemorySpendGuards
from authnode.repositories.protocols import SpendGuardStore
from authnode.repositories.spend_guards import GUARD_TTL, SpendGuards
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio


async def _repository(mongo: MongoHandles) -> SpendGuards:
    guards = SpendGuards(mongo)
    await guards.ensure_indexes()
    return guards


@pytest.fixture
async def guards(side: str, request: pytest.FixtureRequest) -> AsyncIterator[SpendGuardStore]:
    async with either(side, request, MemorySpendGuards, _repository) as store:
        yield store


async def test_one_of_concurrent_claims_wins(guards: SpendGuardStore) -> None:
    claims = await asyncio.gather(*(guards.claim("refresh:h", NOW) for _ in range(5)))
    assert claims.count(True) == 1
    assert not await guards.claim("refresh:h", NOW + GUARD_TTL * 2), "until purged"
    assert await guards.claim("email:h", NOW), "another key"


async def test_purge_frees_the_expired_guards(guards: SpendGuardStore) -> None:
    assert await guards.claim("early", NOW)
    assert await guards.claim("late", NOW + timedelta(minutes=1))
    assert await guards.purge(NOW + GUARD_TTL - timedelta(seconds=1)) == 0
    assert await guards.purge(NOW + GUARD_TTL) == 1
    assert await guards.claim("early", NOW + GUARD_TTL)
    assert not await guards.claim("late", NOW + GUARD_TTL)
