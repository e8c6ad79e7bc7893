"""The EmailTokenStore contract: a link is spent once, by kind, before it expires."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.email_tokens import EmailTokenRepository
from authnode.repositories.memory import MemoryEmailTokenStore
from authnode.repositories.protocols import EmailTokenStore
from authnode.repositories.records import EmailToken
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio
TTL = timedelta(hours=1)
SOON = NOW + timedelta(seconds=10)


async def _repository(mongo: MongoHandles) -> EmailTokenRepository:
    tokens = EmailTokenRepository(mongo)
    await tokens.ensure_indexes()
    return tokens


@pytest.fixture
async def tokens(side: str, request: pytest.FixtureRequest) -> AsyncIterator[EmailTokenStore]:
    async with either(side, request, MemoryEmailTokenStore, _repository) as store:
        yield store


def _reset(token_hash: str = "t1", user_id: str = "u1") -> EmailToken:
    return EmailToken(id=token_hash, kind="password_reset", created_at=NOW,
                      expires_at=NOW + TTL, user_id=user_id, credential_version=3)


def _verification(token_hash: str = "v1") -> EmailToken:
    return EmailToken(id=token_hash, kind="verify_email", created_at=NOW,
                      expires_at=NOW + TTL, registration_id="r1")


async def test_a_link_is_spent_once(tokens: EmailTokenStore) -> None:
    token = _reset()
    await tokens.insert(token)
    assert await tokens.is_usable("t1", "password_reset", SOON)
    spent = await tokens.consume("t1", "password_reset", SOON)
    assert spent == dataclasses.replace(token, used_at=SOON)
    assert not await tokens.is_usable("t1", "password_reset", SOON)
    assert await tokens.consume("t1", "password_reset", SOON) is None


async def test_concurrent_clicks_spend_a_link_once(tokens: EmailTokenStore) -> None:
    await tokens.insert(_verification())
    spent = await asyncio.gather(*(tokens.consume("v1", "verify_email", SOON)
                                   for _ in range(4)))
    assert sum(token is not None for token in spent) == 1
    winner = next(token for token in spent if token is not None)
    assert winner.registration_id == "r1" and winner.used_at == SOON


async def test_a_link_is_usable_only_for_its_kind_and_before_it_expires(
        tokens: EmailTokenStore) -> None:
    await tokens.insert(_reset())
    await tokens.insert(_reset("t2"))
    assert not await tokens.is_usable("t1", "verify_email", SOON)
    assert not await tokens.is_usable("t1", "password_reset", NOW + TTL)
    assert not await tokens.is_usable("unknown", "password_reset", SOON)
    assert await tokens.consume("t2", "password_reset", NOW + TTL) is None
    assert await tokens.consume("unknown", "password_reset", SOON) is None
    assert await tokens.is_usable("t1", "password_reset", SOON)


async def test_the_owner_of_an_account_link(tokens: EmailTokenStore) -> None:
    await tokens.insert(_reset())
    await tokens.insert(_verification())
    assert await tokens.owner("t1") == "u1"
    assert await tokens.consume("t1", "password_reset", SOON) is not None
    assert await tokens.owner("t1") == "u1", "spent, it still names its user"
    assert await tokens.owner("v1") is None, "a registration's link names no user"
    assert await tokens.owner("unknown") is None


async def test_deleting_a_users_links(tokens: EmailTokenStore) -> None:
    await tokens.insert(_reset("mine"))
    await tokens.insert(_reset("theirs", user_id="u2"))
    await tokens.delete_for_user("u1")
    assert not await tokens.is_usable("mine", "password_reset", SOON)
    assert await tokens.owner("mine") is None
    assert await tokens.is_usable("theirs", "password_reset", SOON)


async def test_purge_deletes_expired_and_spent_links(tokens: EmailTokenStore) -> None:
    await tokens.insert(_reset("spent"))
    await tokens.insert(dataclasses.replace(_reset("expired"),
                                            expires_at=NOW + timedelta(minutes=1)))
    await tokens.insert(_verification("live"))
    assert await tokens.consume("spent", "password_reset", SOON) is not None
    assert await tokens.purge(NOW + timedelta(minutes=1)) == 2
    assert await tokens.owner("spent") is None and await tokens.owner("expired") is None
    assert await tokens.is_usable("live", "verify_email", NOW + timedelta(minutes=1))
    assert await tokens.purge(NOW + timedelta(minutes=1)) == 0
