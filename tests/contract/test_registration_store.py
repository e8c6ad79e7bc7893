"""The RegistrationStore contract: pending sign-ups, kept until they expire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.memory import MemoryRegistrationStore
from authnode.repositories.protocols import RegistrationStore
from authnode.repositories.records import Registration
from authnode.repositories.registrations import RegistrationRepository
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio
TTL = timedelta(days=1)


async def _repository(mongo: MongoHandles) -> RegistrationRepository:
    registrations = RegistrationRepository(mongo)
    await registrations.ensure_indexes()
    return registrations


@pytest.fixture
async def registrations(side: str,
                        request: pytest.FixtureRequest) -> AsyncIterator[RegistrationStore]:
    async with either(side, request, MemoryRegistrationStore, _repository) as store:
        yield store


def _registration(registration_id: str, email: str = "ada@example.com", *,
                  minutes: int = 0) -> Registration:
    created = NOW + timedelta(minutes=minutes)
    return Registration(id=registration_id, email=email, name=None, password_hash="h",
                        created_at=created, expires_at=created + TTL)


async def test_a_registration_lives_until_it_expires(registrations: RegistrationStore) -> None:
    registration = _registration("r1")
    await registrations.insert(registration)
    assert await registrations.live("r1", NOW) == registration
    assert await registrations.live("r1", NOW + TTL) is None
    assert await registrations.live("unknown", NOW) is None


async def test_the_newest_live_registration_of_an_address(
        registrations: RegistrationStore) -> None:
    await registrations.insert(_registration("first", minutes=0))
    await registrations.insert(_registration("third", minutes=2))
    await registrations.insert(_registration("second", minutes=1))
    await registrations.insert(_registration("elsewhere", "bob@example.com", minutes=3))
    newest = await registrations.newest_live("ada@example.com", NOW)
    assert newest is not None and newest.id == "third"
    # "third" expires at NOW + TTL + 2 minutes; at that moment only none of ada's live.
    assert await registrations.newest_live("ada@example.com",
                                           NOW + TTL + timedelta(minutes=2)) is None
    assert await registrations.newest_live("nobody@example.com", NOW) is None


async def test_extending_never_shortens(registrations: RegistrationStore) -> None:
    await registrations.insert(_registration("r1"))
    await registrations.extend("r1", NOW + timedelta(hours=1))
    assert await registrations.live("r1", NOW + TTL - timedelta(seconds=1)) is not None
    await registrations.extend("r1", NOW + TTL + timedelta(hours=1))
    kept = await registrations.live("r1", NOW + TTL)
    assert kept is not None and kept.expires_at == NOW + TTL + timedelta(hours=1)
    await registrations.extend("unknown", NOW + TTL)
    assert await registrations.live("unknown", NOW) is None


async def test_deleting_one_or_every_registration_of_an_address(
        registrations: RegistrationStore) -> None:
    for registration_id in ("a", "b", "c"):
        await registrations.insert(_registration(registration_id))
    await registrations.insert(_registration("bob's", "bob@example.com"))
    await registrations.delete("a")
    await registrations.delete("a")
    assert await registrations.live("a", NOW) is None
    assert await registrations.delete_for_email("ada@example.com") == 2
    assert await registrations.delete_for_email("ada@example.com") == 0
    assert await registrations.live("bob's", NOW) is not None


async def test_purge_deletes_expired_registrations(registrations: RegistrationStore) -> None:
    await registrations.insert(_registration("old", minutes=0))
    await registrations.insert(_registration("new", minutes=10))
    assert await registrations.purge(NOW + TTL + timedelta(minutes=5)) == 1
    assert await registrations.live("new", NOW) is not None
    assert await registrations.purge(NOW + TTL + timedelta(minutes=10)) == 1
