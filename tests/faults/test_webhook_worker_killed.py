"""A worker SIGKILLed in the middle of a webhook POST: the event is still delivered, with the
same ``webhook-id``.

The receiver (a real HTTP server in this test) reads the first POST and never answers; the
moment it has it, the worker process (``authnode serve --role worker``) is SIGKILLed. Its
job stays ``doing``; a new worker requeues it once the heartbeat is older than
``STALLED_JOB_AFTER_S`` (6 s in the tests) and POSTs again. Asserted: the receiver got the
event twice (at least once is the promise; the killed attempt did reach it), both with the
event's id as ``webhook-id``, both signatures verify with the stock Standard Webhooks
verifier, and the delivery ends ``succeeded`` with the one attempt the killed worker could
not record missing.
"""

from __future__ import annotations

import time

import anyio
import pytest
from standardwebhooks.webhooks import Webhook

from authnode.clients.mongo import create_mongo
from authnode.jobs.app import create_job_app
from authnode.repositories.webhooks import WebhookDeliveryRepository, WebhookEndpointRepository
from authnode.settings import load_settings
from authnode.tokens.sealing import WEBHOOK_SECRETS, SealedBox
from authnode.tuning import HostResources
from authnode.webhooks.delivery import JobQueueDeliveries, Webhooks
from authnode.webhooks.events import Event, WebhookEvent
from tests.faults.conftest import EnvFactory
from tests.faults.load import show
from tests.webhook_receiver import running_receiver

pytestmark = [pytest.mark.alone, pytest.mark.anyio]

DELIVERY_TIMEOUT_S = 45.0


async def test_worker_sigkilled_mid_post_still_delivers_with_the_same_id(
        single_env: EnvFactory, capsys: pytest.CaptureFixture[str]) -> None:
    env = single_env(WEBHOOK_ALLOW_PRIVATE="true")
    settings = load_settings(env.variables, host=HostResources(cpus=2, memory_bytes=8 << 30))
    assert settings.secret_key is not None
    mongo = create_mongo(settings)
    jobs = create_job_app(settings)
    await jobs.open_async()
    first = second = None
    try:
        deliveries = WebhookDeliveryRepository(mongo)
        webhooks = Webhooks(endpoints=WebhookEndpointRepository(mongo), deliveries=deliveries,
                            queue=JobQueueDeliveries(jobs), box=SealedBox([settings.secret_key],
                                                               purpose=WEBHOOK_SECRETS),
                            allow_private=True)
        async with running_receiver(["hang"]) as receiver:
            endpoint, secret = await webhooks.create_endpoint(receiver.url, ["user.created"])
            event = Event.new(WebhookEvent.USER_CREATED, "u-killed")
            assert await webhooks.emit(event) == 1

            first = env.start("worker", wait=False, name="webhook-worker-killed")
            with anyio.fail_after(DELIVERY_TIMEOUT_S):
                while not receiver.received:
                    assert first.proc.poll() is None, first.logs()[-3000:]
                    await anyio.sleep(0.01)
            first.kill()  # the POST is in flight: the receiver holds it unanswered
            killed_at = time.monotonic()

            second = env.start("worker", wait=False, name="webhook-worker-restarted")
            with anyio.fail_after(DELIVERY_TIMEOUT_S):
                while (found := await webhooks.list_deliveries(endpoint.id)) == [] \
                        or found[0].status != "succeeded":
                    assert second.proc.poll() is None, second.logs()[-3000:]
                    await anyio.sleep(0.1)
            redelivered_after_s = time.monotonic() - killed_at
            [delivery] = found
            payloads = [Webhook(secret).verify(r.body, r.headers) for r in receiver.received]
            ids = [r.headers["webhook-id"] for r in receiver.received]
        requeued = second.logs().count("stalled job requeued")
        show(capsys, "worker SIGKILLed while a webhook POST was in flight", {
            "POSTs received": len(ids),
            "webhook-ids": ids,
            "seconds from the kill to the delivery": round(redelivered_after_s, 2),
            "stalled jobs requeued by the new worker": requeued,
            "attempts recorded": [(a.status_code, a.error) for a in delivery.attempts],
        })
        assert ids == [event.id, event.id]
        assert payloads[0] == payloads[1]
        assert requeued >= 1  # the new worker found the job stalled (and may log others)
        assert delivery.webhook_id == event.id
        assert [a.status_code for a in delivery.attempts] == [200]
    finally:
        for process in (first, second):
            if process is not None:
                process.kill()
        await jobs.close_async()
        await mongo.close()
