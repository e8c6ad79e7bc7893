"""Endpoints, emitting events, and the job that delivers one event to one endpoint.

The API side (:class:`Webhooks`) never talks to a receiver: :meth:`Webhooks.emit` reads the
live endpoints and inserts one job per subscribed endpoint, through a
:class:`DeliveryQueue` (procrastinate on PostgreSQL in production). A receiver that is
slow or down only ever holds a worker (queue ``webhooks``, its own worker so emails are
never stuck behind it).

The worker side (:class:`WebhookDeliverer`) runs one attempt per job run: check the URL
again (SSRF guard, DNS may have changed), POST the signed body to the address it checked,
record the attempt, and raise when it did not get a 2xx so procrastinate retries.

Retries (procrastinate ``RetryStrategy(max_attempts=10, exponential_wait=3)``: the wait
before retry n is 3**n s): 11 attempts, at 0 s, then 3 s, 9 s, 27 s, 81 s, ~4 min,
~12 min, ~36 min, ~1.8 h, ~5.5 h and ~16.4 h after the one before: the last attempt is
about 24.6 h after the first (:data:`RETRY_SCHEDULE_S`). Then the job is ``failed`` and the
delivery too.

At least once: the ``webhook-id`` is the event's id, fixed when the job is inserted, so
every attempt, and a rerun of a job whose worker died mid-POST (requeued by the
stalled-job check), carries the same one; receivers drop repeats by it. Each attempt is
signed anew with its own ``webhook-timestamp`` (receivers refuse timestamps more than a
few minutes old); the body is the same bytes every time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import httpx
import procrastinate
from procrastinate.exceptions import ConnectorException

from authnode.errors import InvalidRequest, NotFound, Unavailable
from authnode.repositories.protocols import WebhookDeliveryStore, WebhookEndpointStore
from authnode.repositories.records import (
    DeliveryAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    new_webhook_endpoint_id,
)
from authnode.tokens.sealing import SealedBox
from authnode.webhooks import signing
from authnode.webhooks.events import Event, WebhookEvent
from authnode.webhooks.targets import TargetRefused, check

log = logging.getLogger("authnode.webhooks")

WEBHOOK_QUEUE = "webhooks"
DELIVER_WEBHOOK_TASK = "authnode.deliver_webhook"

RETRIES = 10  # procrastinate's max_attempts: retries after the first run
EXPONENTIAL_WAIT_S = 3
RETRY_SCHEDULE_S = tuple(EXPONENTIAL_WAIT_S ** (n + 1) for n in range(RETRIES))

CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 10.0  # the whole attempt: connect, send, the response's status line
MAX_DESCRIPTION_CHARS = 200
USER_AGENT = "authnode-webhooks/1"


def retry_strategy() -> procrastinate.RetryStrategy:
    return procrastinate.RetryStrategy(max_attempts=RETRIES, exponential_wait=EXPONENTIAL_WAIT_S)


def delivery_id(endpoint_id: str, webhook_id: str) -> str:
    return f"{endpoint_id}:{webhook_id}"


def _now(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


# --------------------------------------------------------------------------- the API side


@dataclass(frozen=True)
class DeliveryJob:
    """One event for one endpoint: the arguments of one delivery job."""

    endpoint_id: str
    webhook_id: str
    event: dict[str, Any]  # Event.payload()


class DeliveryQueue(Protocol):
    async def enqueue(self, jobs: Sequence[DeliveryJob]) -> None:
        """Make the jobs durable (or raise :class:`Unavailable`); never waits on a receiver."""
        ...


class JobQueueDeliveries:
    """:class:`DeliveryQueue` on procrastinate: all the jobs of one event in one insert."""

    def __init__(self, app: procrastinate.App) -> None:
        self._task = app.configure_task(DELIVER_WEBHOOK_TASK, queue=WEBHOOK_QUEUE)

    async def enqueue(self, jobs: Sequence[DeliveryJob]) -> None:
        if not jobs:
            return
        arguments: list[dict[str, Any]] = [
            {"endpoint_id": job.endpoint_id, "webhook_id": job.webhook_id, "event": job.event}
            for job in jobs]
        try:
            await self._task.batch_defer_async(*arguments)
        except (ConnectorException, OSError) as error:
            raise Unavailable("postgresql", "The job queue (postgresql) is unavailable; "
                              "no webhook was queued, try again shortly.") from error


def _event_types(events: Sequence[str]) -> tuple[str, ...]:
    if isinstance(events, str) or not events:
        raise InvalidRequest("events must be a non-empty list of event types.")
    known = {str(e) for e in WebhookEvent}
    unknown = [e for e in events if e not in known]
    if unknown:
        raise InvalidRequest(f"Unknown event types: {', '.join(map(str, unknown))}; "
                             f"known: {', '.join(sorted(known))}.")
    return tuple(dict.fromkeys(events))


class Webhooks:
    """What the admin routes and the account flows call."""

    def __init__(self, *, endpoints: WebhookEndpointStore, deliveries: WebhookDeliveryStore,
                 queue: DeliveryQueue, box: SealedBox, allow_private: bool,
                 clock: Callable[[], float] = time.time) -> None:
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._queue = queue
        self._box = box
        self._allow_private = allow_private
        self._clock = clock

    async def create_endpoint(self, url: str, events: Sequence[str],
                              description: str = "") -> tuple[WebhookEndpoint, str]:
        """Register ``url`` for ``events``; the endpoint and its ``whsec_`` secret, which
        is shown this once (only its sealed form is stored). Raises
        :class:`InvalidRequest` (:class:`TargetRefused` for the URL)."""
        types = _event_types(events)
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidRequest(
                f"description must be text of at most {MAX_DESCRIPTION_CHARS} characters.")
        target = await check(url, allow_private=self._allow_private)
        secret = signing.new_secret()
        endpoint = WebhookEndpoint(id=new_webhook_endpoint_id(), url=target.url, events=types,
                                   description=description,
                                   sealed_secret=self._box.seal(secret),
                                   created_at=_now(self._clock))
        await self._endpoints.insert(endpoint)
        return endpoint, secret

    async def list_endpoints(self) -> list[WebhookEndpoint]:
        """The live endpoints, oldest first (``sealed_secret`` is not for display)."""
        return await self._endpoints.live()

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        found = await self._endpoints.by_id(endpoint_id)
        if found is None or found.deleted_at is not None:
            raise NotFound("No such webhook endpoint.")
        return found

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Stop sending to it: jobs still queued for it end without a POST."""
        if not await self._endpoints.delete(endpoint_id, _now(self._clock)):
            raise NotFound("No such webhook endpoint.")

    async def list_deliveries(self, endpoint_id: str, limit: int = 50) -> list[WebhookDelivery]:
        """The endpoint's deliveries with their attempts, newest first (a deleted
        endpoint's too). A delivery appears with its first attempt."""
        if await self._endpoints.by_id(endpoint_id) is None:
            raise NotFound("No such webhook endpoint.")
        return await self._deliveries.for_endpoint(endpoint_id, max(1, min(limit, 500)))

    async def emit(self, event: Event) -> int:
        """Queue ``event`` for every live endpoint that asked for its type; how many
        deliveries were queued. Raises :class:`Unavailable` when the job queue is down."""
        targets = [e for e in await self._endpoints.live() if str(event.type) in e.events]
        payload = event.payload()
        await self._queue.enqueue([DeliveryJob(endpoint_id=e.id, webhook_id=event.id,
                                               event=payload) for e in targets])
        return len(targets)


# --------------------------------------------------------------------------- the worker side


class DeliveryFailed(Exception):
    """An attempt without a 2xx answer: the job raises it so procrastinate retries."""


class WebhookDeliverer:
    """Runs attempts. ``client``: an ``httpx.AsyncClient`` to reuse (tests pass their own
    timeouts through ``connect_timeout_s`` / ``total_timeout_s`` instead)."""

    def __init__(self, *, endpoints: WebhookEndpointStore, deliveries: WebhookDeliveryStore,
                 box: SealedBox, allow_private: bool,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 total_timeout_s: float = TOTAL_TIMEOUT_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._box = box
        self._allow_private = allow_private
        self._total_timeout_s = total_timeout_s
        self._clock = clock
        # No redirects (a 3xx is a failed attempt: following one would skip the SSRF
        # check); no proxy or settings from the environment (the connection must go to
        # the checked address).
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(total_timeout_s, connect=connect_timeout_s),
            follow_redirects=False, trust_env=False,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def purge(self, updated_before: datetime) -> int:
        """Forget delivery records untouched since ``updated_before`` (the purge job)."""
        return await self._deliveries.purge(updated_before)

    async def attempt(self, endpoint_id: str, webhook_id: str, event: dict[str, Any], *,
                      final: bool) -> str:
        """One attempt; its outcome (``delivered``, or ``dropped`` when the endpoint is
        gone). Raises :class:`DeliveryFailed` after recording a failed attempt
        (``final``: no retry follows, the delivery is recorded ``failed``)."""
        endpoint = await self._endpoints.by_id(endpoint_id)
        if endpoint is None or endpoint.deleted_at is not None or endpoint.sealed_secret is None:
            if endpoint is not None:
                await self._record(endpoint_id, webhook_id, event, None, final=True)
            return "dropped"
        body = Event.from_payload(event).body()
        started = time.perf_counter()
        at = _now(self._clock)
        status_code: int | None = None
        error: str | None = None
        try:
            status_code = await self._post(endpoint, webhook_id, body)
        except TargetRefused as refused:
            error = f"refused: {refused.message}"
        except TimeoutError:
            error = f"timeout: no answer within {self._total_timeout_s:g} s"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:300]
        except OSError as failure:
            error = f"{type(failure).__name__}: {failure}"[:300]
        attempt = DeliveryAttempt(at=at, duration_ms=round((time.perf_counter() - started)
                                                           * 1000),
                                  status_code=status_code, error=error)
        await self._record(endpoint_id, webhook_id, event, attempt, final=final)
        # Ids only: never the URL (it may hold a token) nor anything of the secret.
        log.info(f"webhook attempt: endpoint={endpoint_id} webhook_id={webhook_id}", extra={
            "task": DELIVER_WEBHOOK_TASK, "status": status_code,
            "outcome": "delivered" if attempt.succeeded else (error or "non-2xx"),
            "duration_ms": attempt.duration_ms})
        if not attempt.succeeded:
            raise DeliveryFailed(error or f"the receiver answered {status_code}")
        return "delivered"

    async def _post(self, endpoint: WebhookEndpoint, webhook_id: str, body: bytes) -> int:
        assert endpoint.sealed_secret is not None
        with anyio.fail_after(self._total_timeout_s):
            target = await check(endpoint.url, allow_private=self._allow_private)
            url, host, extensions = target.pinned()
            headers = {**host, **signing.headers(self._box.open(endpoint.sealed_secret),
                                                 webhook_id, int(self._clock()), body)}
            # Only the status line is read: a receiver's body, however large, is not.
            async with self._client.stream("POST", url, content=body, headers=headers,
                                           extensions=extensions) as response:
                return response.status_code

    async def _record(self, endpoint_id: str, webhook_id: str, event: dict[str, Any],
                      attempt: DeliveryAttempt | None, *, final: bool) -> None:
        """Append ``attempt`` (None: the endpoint is gone) to the delivery's record."""
        key = delivery_id(endpoint_id, webhook_id)
        for _ in range(5):  # compare-and-set; only a rerun of a stalled job competes
            now = _now(self._clock)
            stored = await self._deliveries.get(key) or WebhookDelivery(
                id=key, endpoint_id=endpoint_id, webhook_id=webhook_id,
                event_type=str(event.get("type")), status="pending", created_at=now,
                updated_at=now)
            attempts = stored.attempts + ((attempt,) if attempt is not None else ())
            if attempt is not None and attempt.succeeded:
                status = "succeeded"
            elif stored.status == "succeeded":
                status = "succeeded"  # a late failure of a rerun does not undo a success
            else:
                status = "failed" if final else "pending"
            changed = dataclasses.replace(stored, version=stored.version + 1, status=status,
                                          updated_at=now, attempts=attempts)
            if await self._deliveries.replace(changed):
                return
        raise RuntimeError(f"delivery {key}: too many concurrent changes")
