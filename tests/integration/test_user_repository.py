"""authnode.repositories.users against FerretDB: the address lookup decides who holds an
address (once, under concurrency), frees it on deletion, heals one left dangling by a
crash, and is created for accounts that predate it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from authnode.clients.mongo import MongoHandles, create_mongo
from authnode.repositories.records import User, new_user_id
from authnode.repositories.users import (
    DANGLING_LOOKUP_AFTER,
    LOOKUP_COLLECTION,
    UserRepository,
    user_to_document,
)
from authnode.settings import load_settings
from authnode.tuning import HostResources

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
KEY = b"k" * 32
SECRET_KEY = "Vq3Zr8Lm1Tx6Ny0Pb5Hc9Ks2Wd7Jf4Ga8Re3Ui6Oh1Ye5Bn0Xs"  # a well-formed 256+ bit key


def _user(email: str) -> User:
    return User(id=new_user_id(), email=email, name=None, password_hash="h",
                email_verified=True, disabled=False, credential_version=1,
                created_at=NOW, updated_at=NOW)


@pytest.fixture
async def mongo(mongo_uri: str) -> AsyncIterator[MongoHandles]:
    settings = load_settings({"MONGODB_URI": mongo_uri, "SECRET_KEY": SECRET_KEY},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    handles = create_mongo(settings)
    try:
        yield handles
    finally:
        await handles.close()


@pytest.fixture
async def users(mongo: MongoHandles) -> UserRepository:
    repository = UserRepository(mongo, id_key=KEY)
    await repository.ensure_indexes()
    return repository


async def test_one_account_per_address_even_when_created_concurrently(
        users: UserRepository) -> None:
    candidates = [_user("race@example.com") for _ in range(12)]
    created = await asyncio.gather(*(users.create(user, NOW) for user in candidates))
    assert sorted(created) == [False] * 11 + [True]
    winner = candidates[created.index(True)]
    found = await users.by_email("race@example.com")
    assert found is not None and found.id == winner.id
    assert await users.count() == 1


async def test_ids_are_random_and_deletion_frees_the_address(users: UserRepository) -> None:
    first = _user("again@example.com")
    assert await users.create(first, NOW)
    assert await users.by_email("other@example.com") is None
    assert await users.delete(first.id)
    assert await users.by_email("again@example.com") is None
    second = _user("again@example.com")
    assert await users.create(second, NOW)
    assert second.id != first.id and len(second.id) == 32
    found = await users.by_email("again@example.com")
    assert found is not None and found.id == second.id


async def test_a_dangling_lookup_is_released_only_once_it_is_old(
        users: UserRepository, mongo: MongoHandles) -> None:
    """A lookup whose user was never written (the process died between the two writes):
    a recent one may be an account being created right now, so it holds; an old one is
    released and the address can be registered."""
    lookups = mongo.primary[LOOKUP_COLLECTION]
    email = "dangling@example.com"
    await lookups.insert_one({"_id": users.lookup_id(email), "user_id": "gone",
                              "created_at": NOW - DANGLING_LOOKUP_AFTER / 2})
    assert await users.by_email(email) is None
    assert not await users.create(_user(email), NOW)
    later = NOW + DANGLING_LOOKUP_AFTER
    user = _user(email)
    assert await users.create(user, later)
    found = await users.by_email(email)
    assert found is not None and found.id == user.id
    # A live account's lookup is never released, however old.
    assert not await users.create(_user(email), later + timedelta(days=365))


async def test_backfill_gives_old_accounts_a_lookup_with_their_own_id(
        users: UserRepository, mongo: MongoHandles) -> None:
    old_id = users.lookup_id("old@example.com")  # how ids were made before
    await mongo.primary["users"].insert_one(
        {**user_to_document(_user("old@example.com")), "_id": old_id})
    assert await users.by_email("old@example.com") is None
    assert await users.backfill_lookups(NOW) == 1
    assert await users.backfill_lookups(NOW) == 0
    found = await users.by_email("old@example.com")
    assert found is not None and found.id == old_id
