"""The SecondFactorStore contract: whole-record writes guarded by version, as stored."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.memory import MemorySecondFactorStore
from authnode.repositories.protocols import SecondFactorStore
from authnode.repositories.records import Passkey, SecondFactors
from authnode.repositories.second_factors import SecondFactorRepository
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio


async def _repository(mongo: MongoHandles) -> SecondFactorRepository:
    return SecondFactorRepository(mongo)


@pytest.fixture
async def factors(side: str,
                  request: pytest.FixtureRequest) -> AsyncIterator[SecondFactorStore]:
    async with either(side, request, MemorySecondFactorStore, _repository) as store:
        yield store


PASSKEY = Passkey(id="cred-1", public_key=b"\xa5\x01\x02", sign_count=3, name="laptop",
                  created_at=NOW, last_used_at=None)
FULL = SecondFactors(user_id="u1", version=1, totp_sealed=b"sealed\x00seed",
                     totp_enabled_at=NOW, totp_pending_sealed=None, totp_pending_at=None,
                     recovery=("h1", "h2"), passkeys=(PASSKEY,))


async def test_what_is_stored_is_read_back_alike(factors: SecondFactorStore) -> None:
    assert await factors.get("u1") is None
    assert await factors.replace(FULL)
    assert await factors.get("u1") == FULL
    assert (await factors.get("u1") or FULL).methods == ["totp", "recovery_code", "webauthn"]
    assert await factors.get("u2") is None


async def test_a_write_from_a_stale_read_is_refused(factors: SecondFactorStore) -> None:
    assert await factors.replace(FULL)
    assert not await factors.replace(FULL), "version 1 again: someone was first"
    second = dataclasses.replace(FULL, version=2, recovery=("h2",))
    assert await factors.replace(second)
    stale = dataclasses.replace(FULL, version=2, recovery=())
    assert not await factors.replace(stale)
    assert (await factors.get("u1")) == second
    used = dataclasses.replace(second, version=3, passkeys=(dataclasses.replace(
        PASSKEY, sign_count=4, last_used_at=NOW + timedelta(seconds=1)),))
    assert await factors.replace(used)
    assert (await factors.get("u1")) == used


async def test_delete_forgets_every_factor(factors: SecondFactorStore) -> None:
    assert await factors.replace(FULL)
    assert await factors.delete("u1")
    assert await factors.get("u1") is None
    assert not await factors.delete("u1")
    assert await factors.replace(FULL), "a fresh start is version 1 again"
