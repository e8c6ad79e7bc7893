"""The SentEmailStore contract: idempotency keys of emails handed to SMTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.memory import MemorySentEmailStore
from authnode.repositories.protocols import SentEmailStore
from authnode.repositories.sent_emails import SentEmailRepository
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio


async def _repository(mongo: MongoHandles) -> SentEmailRepository:
    sent = SentEmailRepository(mongo)
    await sent.ensure_indexes()
    return sent


@pytest.fixture
async def sent(side: str, request: pytest.FixtureRequest) -> AsyncIterator[SentEmailStore]:
    async with either(side, request, MemorySentEmailStore, _repository) as store:
        yield store


async def test_a_key_is_recorded_once(sent: SentEmailStore) -> None:
    assert not await sent.was_sent("job-1")
    await sent.record("job-1", "verify_email", NOW)
    await sent.record("job-1", "verify_email", NOW + timedelta(days=30))  # a repeated job
    assert await sent.was_sent("job-1")
    assert not await sent.was_sent("job-2")
    # The first record counts: purged a week after the first send.
    assert await sent.purge(NOW + timedelta(days=7)) == 1
    assert not await sent.was_sent("job-1")


async def test_purge_keeps_the_recent_keys(sent: SentEmailStore) -> None:
    await sent.record("old", "password_reset", NOW)
    await sent.record("new", "password_reset", NOW + timedelta(days=1))
    assert await sent.purge(NOW) == 1
    assert not await sent.was_sent("old") and await sent.was_sent("new")
    assert await sent.purge(NOW) == 0
