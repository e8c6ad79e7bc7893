"""The SigningKeyStore contract: unique kid and generation, newest first, retirement that
drops the private half, compare-and-set on the MAC, purge by kid."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.memory import MemorySigningKeyStore
from authnode.repositories.signing_keys import SigningKeyRepository
from authnode.tokens.keyring import SigningKeyStore
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio


async def _repository(mongo: MongoHandles) -> SigningKeyRepository:
    keys = SigningKeyRepository(mongo.primary)
    await keys.ensure_indexes()
    return keys


@pytest.fixture
async def keys(side: str, request: pytest.FixtureRequest) -> AsyncIterator[SigningKeyStore]:
    async with either(side, request, MemorySigningKeyStore, _repository) as store:
        yield store


def _key(kid: str, generation: int, **fields: Any) -> dict[str, Any]:
    return {"_id": kid, "generation": generation,
            "created_at": NOW + timedelta(minutes=generation),
            "public_jwk": {"kid": kid}, "sealed_private_key": b"sealed " + kid.encode(),
            "retired_at": None, **fields}


async def test_kid_and_generation_are_unique_and_newest_comes_first(
        keys: SigningKeyStore) -> None:
    assert await keys.insert(_key("a", 1))
    assert await keys.insert(_key("b", 2))
    assert not await keys.insert(_key("a", 3)), "a kid is taken"
    assert not await keys.insert(_key("c", 2)), "a generation is taken"
    assert [d["_id"] for d in await keys.newest(5)] == ["b", "a"]
    assert [d["_id"] for d in await keys.newest(1)] == ["b"]


async def test_of_concurrent_rotations_one_inserts_the_next_generation(
        keys: SigningKeyStore) -> None:
    assert await keys.insert(_key("a", 1))
    results = await asyncio.gather(*(keys.insert(_key(f"n{i}", 2)) for i in range(4)))
    assert results.count(True) == 1


async def test_retiring_drops_the_private_half_once(keys: SigningKeyStore) -> None:
    assert await keys.insert(_key("a", 1))
    assert await keys.retire("a", NOW) == "retired"
    stored = (await keys.newest(1))[0]
    assert stored["retired_at"] == NOW and "sealed_private_key" not in stored
    assert await keys.retire("a", NOW + timedelta(hours=1)) == "already retired"
    assert (await keys.newest(1))[0]["retired_at"] == NOW
    assert await keys.retire("nobody", NOW) == "missing"


async def test_update_is_guarded_by_the_mac(keys: SigningKeyStore) -> None:
    assert await keys.insert(_key("legacy", 1))  # written before MACs existed
    assert await keys.insert(_key("stamped", 2, mac=b"m1"))
    assert not await keys.update("legacy", b"m1", {"mac": b"x"})
    assert await keys.update("legacy", None, {"mac": b"m0"})
    assert not await keys.update("legacy", None, {"mac": b"again"}), "it has a MAC now"
    assert not await keys.update("stamped", b"other", {"mac": b"m2"})
    assert await keys.update("stamped", b"m1", {"mac": b"m2"})
    assert {d["_id"]: d["mac"] for d in await keys.newest(5)} == {"legacy": b"m0",
                                                                  "stamped": b"m2"}


async def test_delete_by_kid(keys: SigningKeyStore) -> None:
    for n, kid in enumerate(("a", "b", "c"), start=1):
        assert await keys.insert(_key(kid, n))
    assert await keys.delete(["a", "c", "nobody"]) == 2
    assert await keys.delete([]) == 0
    assert [d["_id"] for d in await keys.newest(5)] == ["b"]
