"""The UserStore contract: one account per address, conditional password changes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.memory import MemoryUserStore
from authnode.repositories.protocols import UserStore
from authnode.repositories.records import User, new_user_id
from authnode.repositories.users import UserRepository
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio
LATER = NOW + timedelta(minutes=5)


async def _repository(mongo: MongoHandles) -> UserRepository:
    users = UserRepository(mongo, id_key=b"k" * 32)
    await users.ensure_indexes()
    return users


@pytest.fixture
async def users(side: str, request: pytest.FixtureRequest) -> AsyncIterator[UserStore]:
    async with either(side, request, MemoryUserStore, _repository) as store:
        yield store


def _user(email: str = "ada@example.com", **fields: object) -> User:
    user = User(id=new_user_id(), email=email, name="Ada", password_hash="h1",
                email_verified=True, disabled=False, credential_version=1, created_at=NOW,
                updated_at=NOW)
    return dataclasses.replace(user, **fields)


async def test_an_account_is_found_by_address_and_id(users: UserStore) -> None:
    user = _user()
    assert await users.create(user, NOW)
    assert await users.by_email("ada@example.com") == user
    assert await users.by_id(user.id) == user
    assert await users.by_id_for_display(user.id) == user
    assert await users.count() == 1


async def test_unknown_accounts_are_none(users: UserStore) -> None:
    assert await users.create(_user(), NOW)
    assert await users.by_email("bob@example.com") is None
    assert await users.by_id("0" * 32) is None
    assert await users.by_id_for_display("0" * 32) is None
    assert await users.mark_verified("0" * 32, 1, NOW) is None
    assert await users.set_password("0" * 32, "h2", NOW) is None
    assert await users.update_name("0" * 32, "Bob", NOW) is None
    assert await users.set_disabled("0" * 32, True, NOW) is None
    await users.rehash_password("0" * 32, "h1", "h2")
    assert not await users.delete("0" * 32)
    assert await users.count() == 1


async def test_an_address_has_one_account_even_under_concurrent_creations(
        users: UserStore) -> None:
    candidates = [_user(name=f"n{n}") for n in range(6)]
    created = await asyncio.gather(*(users.create(user, NOW) for user in candidates))
    assert sorted(created) == [False] * 5 + [True]
    winner = candidates[created.index(True)]
    assert await users.by_email("ada@example.com") == winner
    assert not await users.create(_user(), NOW), "the address is still taken"
    assert await users.count() == 1


async def test_deleting_frees_the_address(users: UserStore) -> None:
    first = _user()
    assert await users.create(first, NOW)
    assert await users.delete(first.id)
    assert not await users.delete(first.id)
    assert await users.by_email("ada@example.com") is None
    assert await users.by_id(first.id) is None
    second = _user()
    assert await users.create(second, NOW)
    assert await users.by_email("ada@example.com") == second


async def test_verifying_needs_the_credential_version_of_the_link(users: UserStore) -> None:
    user = _user(email_verified=False, credential_version=2)
    assert await users.create(user, NOW)
    assert await users.mark_verified(user.id, 1, LATER) is None
    assert await users.by_id(user.id) == user
    verified = await users.mark_verified(user.id, 2, LATER)
    assert verified == dataclasses.replace(user, email_verified=True, updated_at=LATER)
    assert await users.by_id(user.id) == verified


async def test_a_password_change_bumps_the_version_when_its_conditions_hold(
        users: UserStore) -> None:
    user = _user(email_verified=False)
    assert await users.create(user, NOW)
    assert await users.set_password(user.id, "h2", LATER, expected_hash="other") is None
    assert await users.set_password(user.id, "h2", LATER, expected_version=2) is None
    assert await users.by_id(user.id) == user
    changed = await users.set_password(user.id, "h2", LATER, expected_hash="h1",
                                       expected_version=1)
    assert changed == dataclasses.replace(user, password_hash="h2", credential_version=2,
                                          updated_at=LATER, password_changed_at=LATER)
    reset = await users.set_password(user.id, "h3", LATER, verify_email=True)
    assert reset == dataclasses.replace(changed, password_hash="h3", credential_version=3,
                                        email_verified=True)
    assert await users.by_id(user.id) == reset


async def test_a_rehash_replaces_only_the_hash_it_was_computed_from(users: UserStore) -> None:
    user = _user()
    assert await users.create(user, NOW)
    await users.rehash_password(user.id, "stale", "h9")
    assert await users.by_id(user.id) == user
    await users.rehash_password(user.id, "h1", "h2")
    assert await users.by_id(user.id) == dataclasses.replace(user, password_hash="h2")


async def test_name_and_disabled_flag(users: UserStore) -> None:
    user = _user()
    assert await users.create(user, NOW)
    renamed = await users.update_name(user.id, None, LATER)
    assert renamed == dataclasses.replace(user, name=None, updated_at=LATER)
    disabled = await users.set_disabled(user.id, True, LATER + timedelta(seconds=1))
    assert disabled == dataclasses.replace(renamed, disabled=True,
                                           updated_at=LATER + timedelta(seconds=1))
    assert await users.by_email(user.email) == disabled
    enabled = await users.set_disabled(user.id, False, LATER)
    assert enabled is not None and not enabled.disabled


async def test_times_are_kept_to_the_millisecond(users: UserStore) -> None:
    user = _user(created_at=NOW.replace(microsecond=123456))
    assert await users.create(user, NOW)
    found = await users.by_id(user.id)
    assert found is not None and found.created_at == NOW.replace(microsecond=123000)


async def test_paging_returns_every_user_once_in_id_order(users: UserStore) -> None:
    made = [_user(f"user{i:02d}@example.com", created_at=NOW + timedelta(seconds=i))
            for i in range(23)]
    made.append(_user("other@example.org"))
    for user in made:
        assert await users.create(user, NOW)
    seen: list[str] = []
    cursor = None
    while True:
        page = await users.page(after_id=cursor, limit=5)
        if not page:
            break
        seen += [u.id for u in page]
        cursor = page[-1].id
    assert seen == sorted(u.id for u in made)
    prefixed = await users.page(after_id=None, limit=100, email_prefix="user1")
    assert sorted(u.email for u in prefixed) == [f"user{i}@example.com" for i in range(10, 20)]
    assert [u.email for u in await users.page(after_id=None, limit=100, email_prefix="user.")
            ] == [], "the prefix is literal, not a pattern"
    exact = await users.page(after_id=None, limit=100, email="other@example.org")
    assert [u.id for u in exact] == [made[-1].id]
    recent = await users.page(after_id=None, limit=100,
                              created_after=NOW + timedelta(seconds=20))
    assert sorted(u.email for u in recent) == [f"user{i}@example.com" for i in (21, 22)]
