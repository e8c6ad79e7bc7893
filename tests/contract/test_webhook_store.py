"""The webhook stores' contract: endpoints (soft delete drops the secret) and deliveries
(whole-record writes guarded by version, listed newest first per endpoint)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from authnode.clients.mongo import MongoHandles
from authnode.repositories.memory import MemoryWebhookDeliveryStore, MemoryWebhookEndpointStore
from authnode.repositories.protocols import WebhookDeliveryStore, WebhookEndpointStore
from authnode.repositories.records import (
    DeliveryAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    new_webhook_endpoint_id,
)
from authnode.repositories.webhooks import WebhookDeliveryRepository, WebhookEndpointRepository
from tests.contract.conftest import NOW, either

pytestmark = pytest.mark.anyio


async def _endpoints_repository(mongo: MongoHandles) -> WebhookEndpointRepository:
    repository = WebhookEndpointRepository(mongo)
    await repository.ensure_indexes()
    return repository


async def _deliveries_repository(mongo: MongoHandles) -> WebhookDeliveryRepository:
    repository = WebhookDeliveryRepository(mongo)
    await repository.ensure_indexes()
    return repository


@pytest.fixture
async def endpoints(side: str,
                    request: pytest.FixtureRequest) -> AsyncIterator[WebhookEndpointStore]:
    async with either(side, request, MemoryWebhookEndpointStore,
                      _endpoints_repository) as store:
        yield store


@pytest.fixture
async def deliveries(side: str,
                     request: pytest.FixtureRequest) -> AsyncIterator[WebhookDeliveryStore]:
    async with either(side, request, MemoryWebhookDeliveryStore,
                      _deliveries_repository) as store:
        yield store


def _endpoint(offset_s: int = 0, **changes: object) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(id=new_webhook_endpoint_id(), url="https://example.com/hook",
                               events=("user.created", "user.deleted"), description="crm",
                               sealed_secret=b"sealed\x00secret",
                               created_at=NOW + timedelta(seconds=offset_s, microseconds=1234))
    return dataclasses.replace(endpoint, **changes)  # type: ignore[arg-type]


async def test_endpoints_are_read_back_alike(endpoints: WebhookEndpointStore) -> None:
    first, second = _endpoint(0), _endpoint(1, description="", events=("user.locked",))
    await endpoints.insert(second)
    await endpoints.insert(first)
    stored = await endpoints.by_id(first.id)
    assert stored == dataclasses.replace(first, created_at=NOW + timedelta(microseconds=1000))
    assert [e.id for e in await endpoints.live()] == [first.id, second.id], "oldest first"
    assert await endpoints.by_id("whe_none") is None


async def test_a_deleted_endpoint_is_kept_without_its_secret(
        endpoints: WebhookEndpointStore) -> None:
    endpoint = _endpoint()
    await endpoints.insert(endpoint)
    assert await endpoints.delete(endpoint.id, NOW + timedelta(hours=1))
    assert not await endpoints.delete(endpoint.id, NOW + timedelta(hours=2)), "once"
    assert not await endpoints.delete("whe_none", NOW)
    gone = await endpoints.by_id(endpoint.id)
    assert gone is not None
    assert gone.deleted_at == NOW + timedelta(hours=1)
    assert gone.sealed_secret is None
    assert endpoint.id not in [e.id for e in await endpoints.live()]


def _delivery(endpoint_id: str, webhook_id: str, offset_s: int = 0) -> WebhookDelivery:
    at = NOW + timedelta(seconds=offset_s)
    return WebhookDelivery(id=f"{endpoint_id}:{webhook_id}", endpoint_id=endpoint_id,
                           webhook_id=webhook_id, event_type="user.created", status="pending",
                           created_at=at, updated_at=at, version=1)


async def test_deliveries_record_attempts_with_compare_and_set(
        deliveries: WebhookDeliveryStore) -> None:
    delivery = _delivery("whe_a", "evt_1")
    assert await deliveries.get(delivery.id) is None
    failed = DeliveryAttempt(at=NOW, duration_ms=12, status_code=500)
    first = dataclasses.replace(delivery, attempts=(failed,))
    assert await deliveries.replace(first)
    assert not await deliveries.replace(first), "version 1 again: someone was first"
    timeout = DeliveryAttempt(at=NOW + timedelta(seconds=3), duration_ms=10000,
                              error="ReadTimeout")
    ok = DeliveryAttempt(at=NOW + timedelta(seconds=30, microseconds=999), duration_ms=5,
                         status_code=204)
    second = dataclasses.replace(first, version=2, attempts=(failed, timeout))
    assert await deliveries.replace(second)
    stale = dataclasses.replace(first, version=2, status="failed")
    assert not await deliveries.replace(stale)
    third = dataclasses.replace(second, version=3, status="succeeded",
                                updated_at=NOW + timedelta(seconds=30),
                                attempts=(failed, timeout, ok))
    assert await deliveries.replace(third)
    stored = await deliveries.get(delivery.id)
    assert stored == dataclasses.replace(third, attempts=(
        failed, timeout, dataclasses.replace(ok, at=NOW + timedelta(seconds=30))))
    assert stored is not None and [a.succeeded for a in stored.attempts] == [False, False, True]


async def test_deliveries_are_listed_per_endpoint_newest_first(
        deliveries: WebhookDeliveryStore) -> None:
    for offset, (endpoint_id, webhook_id) in enumerate(
            [("whe_a", "evt_1"), ("whe_b", "evt_1"), ("whe_a", "evt_2"), ("whe_a", "evt_3")]):
        assert await deliveries.replace(_delivery(endpoint_id, webhook_id, offset))
    listed = await deliveries.for_endpoint("whe_a", 10)
    assert [d.webhook_id for d in listed] == ["evt_3", "evt_2", "evt_1"]
    assert [d.webhook_id for d in await deliveries.for_endpoint("whe_a", 2)] == \
        ["evt_3", "evt_2"]
    assert await deliveries.for_endpoint("whe_none", 10) == []
    assert await deliveries.purge(NOW + timedelta(seconds=2)) == 2
    assert [d.id for d in await deliveries.for_endpoint("whe_a", 10)] == \
        ["whe_a:evt_3", "whe_a:evt_2"]
