"""Webhooks end to end in one process: the job queue on a real PostgreSQL, the stores on
FerretDB, procrastinate's worker running the delivery task, and a real HTTP receiver on a
free loopback port (``WEBHOOK_ALLOW_PRIVATE=true``, as the issue says the tests set).

* a delivery arrives, and the stock Standard Webhooks verifier accepts its signature;
* a receiver answering 500 then 200 gets the event again, no sooner than the first
  backoff (3 s), with the same ``webhook-id``; both attempts are recorded;
* a receiver that never answers counts as a failed attempt once the (here 1 s) timeout
  passes, and the retry delivers;
* events of one user sort back into the order they were emitted by their ids;
* without the setting a loopback URL is refused at registration, and a delivery whose
  target became private is refused before any connection (the receiver sees nothing).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import anyio
import pytest
from procrastinate.worker import Worker
from standardwebhooks.webhooks import Webhook

from authnode.jobs.tasks import CONTEXT_KEY
from authnode.repositories.records import WebhookDelivery
from authnode.settings import load_settings
from authnode.stack import Stack, ensure_indexes, open_stack
from authnode.tuning import HostResources
from authnode.webhooks.delivery import (
    EXPONENTIAL_WAIT_S,
    WEBHOOK_QUEUE,
    DeliveryFailed,
    WebhookDeliverer,
    Webhooks,
)
from authnode.webhooks.events import Event, WebhookEvent
from authnode.webhooks.targets import TargetRefused
from tests.services import RedisServer
from tests.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.anyio

SECRET_KEY = "mQ3c8TgB0yY8Jd6o4bAq1xk2bVZr6y1u2Pq7fHcN0sLkq9ZyW3eR5tY7uI9oP1aS"
TIMEOUT_S = 1.0  # the deliverer's total timeout in these tests
SETTLE_S = 30.0
CLOCK_SLACK_S = 0.05

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], what: str,
                     timeout: float = SETTLE_S) -> T:
    """Poll ``check`` until it returns something truthy, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.05)


@dataclass
class Running:
    stack: Stack
    webhooks: Webhooks
    deliverer: WebhookDeliverer


@asynccontextmanager
async def running(redis_single: RedisServer, mongo_uri: str, postgres_url: str, *,
                  allow_private: bool = True) -> AsyncIterator[Running]:
    """The stack, and a procrastinate worker on the ``webhooks`` queue, in this process."""
    settings = load_settings({"MONGODB_URI": mongo_uri, "POSTGRES_URL": postgres_url,
                              "REDIS_URL": redis_single.url, "SECRET_KEY": SECRET_KEY,
                              "WEBHOOK_ALLOW_PRIVATE": str(allow_private).lower()},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    async with open_stack(settings, load_keys=False) as stack:
        await ensure_indexes(stack.mongo)
        row = await stack.jobs.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present")
        if not row["present"]:
            await stack.jobs.schema_manager.apply_schema_async()
        assert stack.webhooks is not None and stack.worker.webhooks is not None
        deliverer = WebhookDeliverer(
            endpoints=stack.webhooks._endpoints, deliveries=stack.webhooks._deliveries,
            box=stack.webhooks._box, allow_private=allow_private, total_timeout_s=TIMEOUT_S)
        context = dataclasses.replace(stack.worker, webhooks=deliverer)
        worker = Worker(app=stack.jobs, queues=[WEBHOOK_QUEUE], concurrency=2,
                        install_signal_handlers=False, fetch_job_polling_interval=0.1,
                        additional_context={CONTEXT_KEY: context})  # type: ignore[arg-type]
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(worker.run)
                try:
                    yield Running(stack, stack.webhooks, deliverer)
                finally:
                    worker.stop()
        finally:
            await deliverer.aclose()


@pytest.fixture
async def setup(redis_single: RedisServer, mongo_uri: str,
                postgres_url: str) -> AsyncIterator[Running]:
    if not redis_single.is_running:
        redis_single.start()
    async with running(redis_single, mongo_uri, postgres_url) as run:
        yield run


async def _settled(webhooks: Webhooks, endpoint_id: str,
                   count: int = 1) -> list[WebhookDelivery] | None:
    found = await webhooks.list_deliveries(endpoint_id)
    done = [d for d in found if d.status != "pending"]
    return found if len(done) >= count else None


def _verify(secret: str, received: Receiver) -> list[dict[str, object]]:
    return [Webhook(secret).verify(r.body, r.headers) for r in received.received]


async def test_a_delivery_arrives_signed_for_the_stock_verifier(setup: Running) -> None:
    async with running_receiver() as receiver:
        endpoint, secret = await setup.webhooks.create_endpoint(
            receiver.url, ["user.created", "user.deleted"], "crm")
        assert secret.startswith("whsec_")
        assert endpoint.sealed_secret is not None and secret.encode() not in \
            endpoint.sealed_secret
        event = Event.new(WebhookEvent.USER_CREATED, "u1", email="a@example.com")
        assert await setup.webhooks.emit(event) == 1
        assert await setup.webhooks.emit(Event.new(WebhookEvent.USER_LOCKED, "u1")) == 0
        [delivery] = await eventually(lambda: _settled(setup.webhooks, endpoint.id),
                                      "the delivery")
        [request] = receiver.received
        [payload] = _verify(secret, receiver)
    assert payload == json.loads(event.body())
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["webhook-id"] == event.id
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["content-type"] == "application/json"
    assert delivery.status == "succeeded" and delivery.webhook_id == event.id
    assert delivery.event_type == "user.created"
    assert [(a.status_code, a.error) for a in delivery.attempts] == [(200, None)]
    assert [e.id for e in await setup.webhooks.list_endpoints()] == [endpoint.id]


async def test_500_then_200_is_delivered_on_retry_with_the_same_id(setup: Running) -> None:
    async with running_receiver([500, 200]) as receiver:
        endpoint, secret = await setup.webhooks.create_endpoint(receiver.url,
                                                                ["user.updated"])
        event = Event.new(WebhookEvent.USER_UPDATED, "u1", fields=["name"])
        await setup.webhooks.emit(event)
        [delivery] = await eventually(lambda: _settled(setup.webhooks, endpoint.id),
                                      "the retried delivery")
        first, second = receiver.received
        payloads = _verify(secret, receiver)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event.id
    assert first.body == second.body and payloads[0] == payloads[1]
    assert second.at - first.at >= EXPONENTIAL_WAIT_S - CLOCK_SLACK_S
    assert delivery.status == "succeeded"
    assert [a.status_code for a in delivery.attempts] == [500, 200]


async def test_a_receiver_that_hangs_is_a_failed_attempt(setup: Running) -> None:
    async with running_receiver(["hang", 204]) as receiver:
        endpoint, secret = await setup.webhooks.create_endpoint(receiver.url,
                                                                ["user.deleted"])
        event = Event.new(WebhookEvent.USER_DELETED, "u1")
        await setup.webhooks.emit(event)
        [delivery] = await eventually(lambda: _settled(setup.webhooks, endpoint.id),
                                      "the delivery after a timeout")
        assert len(_verify(secret, receiver)) == 2
    hung, answered = delivery.attempts
    assert hung.status_code is None and hung.error is not None and "timeout" in hung.error
    assert TIMEOUT_S * 1000 - 50 <= hung.duration_ms < TIMEOUT_S * 1000 + 2000
    assert answered.status_code == 204 and delivery.status == "succeeded"


async def test_events_of_one_user_sort_back_into_order(setup: Running) -> None:
    async with running_receiver([500, 200, 500]) as receiver:  # some arrive late
        endpoint, secret = await setup.webhooks.create_endpoint(
            receiver.url, [str(e) for e in WebhookEvent])
        kinds = [WebhookEvent.USER_CREATED, WebhookEvent.USER_VERIFIED,
                 WebhookEvent.USER_UPDATED, WebhookEvent.USER_PASSWORD_CHANGED,
                 WebhookEvent.SESSION_REVOKED, WebhookEvent.USER_DELETED]
        emitted = []
        for kind in kinds:
            event = Event.new(kind, "u1")
            await setup.webhooks.emit(event)
            emitted.append(event.id)
        await eventually(lambda: _settled(setup.webhooks, endpoint.id, len(kinds)),
                         "every delivery")
        payloads = _verify(secret, receiver)
    arrived = {str(p["id"]): p for p in payloads}  # repeats dropped by webhook-id
    assert len(arrived) == len(kinds)
    assert sorted(arrived) == emitted
    assert [arrived[i]["type"] for i in sorted(arrived)] == [str(k) for k in kinds]


async def test_a_deleted_endpoint_gets_nothing_more(setup: Running) -> None:
    async with running_receiver() as receiver:
        endpoint, _ = await setup.webhooks.create_endpoint(receiver.url, ["user.locked"])
        await setup.webhooks.delete_endpoint(endpoint.id)
        assert await setup.webhooks.emit(Event.new(WebhookEvent.USER_LOCKED, "u1")) == 0
        # A job queued before the deletion ends without a POST.
        event = Event.new(WebhookEvent.USER_LOCKED, "u1")
        assert await setup.deliverer.attempt(endpoint.id, event.id, event.payload(),
                                             final=False) == "dropped"
        assert receiver.received == []
    [delivery] = await setup.webhooks.list_deliveries(endpoint.id)
    assert delivery.status == "failed" and delivery.attempts == ()


async def test_private_targets_are_refused_without_the_setting(
        redis_single: RedisServer, mongo_uri: str, postgres_url: str) -> None:
    if not redis_single.is_running:
        redis_single.start()
    async with running_receiver() as receiver:
        async with running(redis_single, mongo_uri, postgres_url) as allowed:
            endpoint, _ = await allowed.webhooks.create_endpoint(receiver.url,
                                                                 ["user.created"])
        async with running(redis_single, mongo_uri, postgres_url,
                           allow_private=False) as refused:
            for url in (receiver.url, "http://localhost:8080/", "http://[::1]/",
                        "http://169.254.169.254/latest/meta-data/"):
                with pytest.raises(TargetRefused):
                    await refused.webhooks.create_endpoint(url, ["user.created"])
            # Registered while allowed; checked again at delivery, refused before connecting.
            event = Event.new(WebhookEvent.USER_CREATED, "u1")
            with pytest.raises(DeliveryFailed):
                await refused.deliverer.attempt(endpoint.id, event.id, event.payload(),
                                                final=True)
            [delivery] = await refused.webhooks.list_deliveries(endpoint.id)
        assert receiver.received == []
    [attempt] = delivery.attempts
    assert delivery.status == "failed"
    assert attempt.error is not None and attempt.error.startswith("refused:")
    assert "loopback" in attempt.error and attempt.status_code is None
