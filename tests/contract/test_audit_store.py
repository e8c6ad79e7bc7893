"""The AuditStore contract: newest first by sortable id, filters, cursor, purge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.audit import AuditRepository
from authnode.repositories.memory import MemoryAuditStore
from authnode.repositories.protocols import AuditStore
from authnode.repositories.records import AuditEvent
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio


async def _repository(mongo: MongoHandles) -> AuditRepository:
    audit = AuditRepository(mongo)
    await audit.ensure_indexes()
    return audit


@pytest.fixture
async def audit(side: str, request: pytest.FixtureRequest) -> AsyncIterator[AuditStore]:
    async with either(side, request, MemoryAuditStore, _repository) as store:
        yield store


def _event(n: int, user: str = "u1", event: str = "login.succeeded") -> AuditEvent:
    return AuditEvent(id=f"{n:04d}", at=NOW + timedelta(seconds=n), event=event,
                      user_id=user, actor="user", outcome="ok", ip="192.0.2.1",
                      user_agent="test", request_id=f"r{n}")


async def test_events_come_newest_first_with_a_cursor(audit: AuditStore) -> None:
    await audit.append([_event(n) for n in range(7)] + [_event(9, user="u2")])
    await audit.append([])
    first = await audit.page(before_id=None, limit=3, user_id="u1")
    assert [e.id for e in first] == ["0006", "0005", "0004"]
    assert first[0] == _event(6)
    rest = await audit.page(before_id=first[-1].id, limit=10, user_id="u1")
    assert [e.id for e in rest] == ["0003", "0002", "0001", "0000"]
    assert [e.id for e in await audit.page(before_id=None, limit=10)][:2] == ["0009", "0006"]


async def test_filters_and_purge(audit: AuditStore) -> None:
    await audit.append([_event(1), _event(2, event="login.failed"), _event(3)])
    failed = await audit.page(before_id=None, limit=10, event="login.failed")
    assert [e.id for e in failed] == ["0002"]
    after = await audit.page(before_id=None, limit=10, after=NOW + timedelta(seconds=1))
    assert [e.id for e in after] == ["0003", "0002"]
    assert await audit.purge(NOW + timedelta(seconds=3)) == 2
    assert [e.id for e in await audit.page(before_id=None, limit=10)] == ["0003"]
