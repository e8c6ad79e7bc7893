"""The AdminKeyStore contract: found by digest, listed oldest first, revoked once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.admin_keys import AdminKeyRepository
from authnode.repositories.memory import MemoryAdminKeyStore
from authnode.repositories.protocols import AdminKeyStore
from authnode.repositories.records import AdminKey
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio


async def _repository(mongo: MongoHandles) -> AdminKeyRepository:
    keys = AdminKeyRepository(mongo)
    await keys.ensure_indexes()
    return keys


@pytest.fixture
async def keys(side: str, request: pytest.FixtureRequest) -> AsyncIterator[AdminKeyStore]:
    async with either(side, request, MemoryAdminKeyStore, _repository) as store:
        yield store


def _key(n: int) -> AdminKey:
    return AdminKey(id=f"k{n}", digest=f"d{n}", name=f"support {n}",
                    scopes=("users:read",), created_at=NOW + timedelta(seconds=n))


async def test_a_key_is_found_by_digest_and_listed(keys: AdminKeyStore) -> None:
    await keys.insert(_key(2))
    await keys.insert(_key(1))
    assert await keys.by_digest("d1") == _key(1)
    assert await keys.by_digest("k1") is None
    assert [k.id for k in await keys.all()] == ["k1", "k2"]


async def test_a_key_is_revoked_once(keys: AdminKeyStore) -> None:
    await keys.insert(_key(1))
    assert await keys.revoke("k1", NOW)
    assert not await keys.revoke("k1", NOW + timedelta(hours=1))
    assert not await keys.revoke("nobody", NOW)
    found = await keys.by_digest("d1")
    assert found is not None and found.revoked_at == NOW
