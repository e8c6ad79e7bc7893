"""The audit log: every security event, appended to ``audit_events`` off the request path.

:meth:`AuditLog.record` never waits and never raises: it queues the event, and a
background task (:meth:`AuditLog.run`, started with the stack) writes batches. A write that
fails is logged and counted (``on_failure``), never retried into the request, and never
fails a login. Who and where come from :func:`bind` (the API binds the client address,
user agent and request id of each request, the admin API the key's name, the CLI
"operator"), so flows record only what happened and to whom.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from authnode.accounts.models import utc
from authnode.repositories.protocols import AuditStore
from authnode.repositories.records import AuditEvent

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000  # events waiting to be written; past it new ones are dropped, counted
BATCH_MAX = 200
FLUSH_EVERY_S = 0.2


@dataclass(frozen=True)
class AuditContext:
    actor: str = "system"
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


def _system() -> AuditContext:
    return AuditContext()


# A factory, called only when an event is recorded: binding costs a request nothing more.
_current: ContextVar[Callable[[], AuditContext]] = ContextVar("audit_context", default=_system)


@contextmanager
def bound(context: AuditContext) -> Iterator[None]:
    token = _current.set(lambda: context)
    try:
        yield
    finally:
        _current.reset(token)


def bind(context: Callable[[], AuditContext]) -> None:
    """Set who and where for the rest of this task (Quart runs each request in its own)."""
    _current.set(context)


def current() -> AuditContext:
    return _current.get()()


def new_event_id(now_s: float) -> str:
    """13 hex digits of milliseconds, then 12 random ones: sorts by time."""
    return f"{int(now_s * 1000):013x}{secrets.token_hex(6)}"


def _ignore() -> None:
    return None


class AuditLog:
    def __init__(self, store: AuditStore, *, clock: Callable[[], float] = time.time,
                 on_failure: Callable[[], None] = _ignore) -> None:
        self.store = store
        # Called with each batch once it is stored (the webhooks hook in here).
        self.on_written: Callable[[list[AuditEvent]], Awaitable[None]] | None = None
        self._clock = clock
        self._on_failure = on_failure
        self._send: MemoryObjectSendStream[AuditEvent]
        self._receive: MemoryObjectReceiveStream[AuditEvent]
        self._send, self._receive = anyio.create_memory_object_stream[AuditEvent](QUEUE_MAX)

    def record(self, event: str, *, user_id: str | None, outcome: str = "ok",
               actor: str | None = None) -> None:
        context = current()
        now = self._clock()
        item = AuditEvent(id=new_event_id(now), at=utc(now), event=event, user_id=user_id,
                          actor=actor or context.actor, outcome=outcome, ip=context.ip,
                          user_agent=context.user_agent, request_id=context.request_id)
        try:
            self._send.send_nowait(item)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._on_failure()
            log.warning("audit event dropped", extra={"event": event, "user_id": user_id})

    async def flush(self) -> int:
        """Write what is queued now; the number written (tests and shutdown)."""
        batch: list[AuditEvent] = []
        while len(batch) < QUEUE_MAX:
            try:
                batch.append(self._receive.receive_nowait())
            except anyio.WouldBlock:
                break
        written = 0
        for start in range(0, len(batch), BATCH_MAX):
            written += await self._write(batch[start:start + BATCH_MAX])
        return written

    async def _write(self, batch: list[AuditEvent]) -> int:
        if not batch:
            return 0
        try:
            await self.store.append(batch)
        except Exception as error:  # the audit log never fails what it records
            for _ in batch:
                self._on_failure()
            log.error("audit events not written", extra={
                "outcome": f"{len(batch)} lost: {type(error).__name__}"})
            return 0
        if self.on_written is not None:
            await self.on_written(batch)
        return len(batch)

    async def run(self) -> None:
        """Write batches until cancelled; then what is left (shielded, bounded)."""
        pending: list[AuditEvent] = []
        try:
            while True:
                pending.append(await self._receive.receive())
                await anyio.sleep(FLUSH_EVERY_S)  # let a burst gather into one batch
                while len(pending) < BATCH_MAX:
                    try:
                        pending.append(self._receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                batch, pending = pending, []
                await self._write(batch)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._write(pending)
                await self.flush()


# --------------------------------------------------------------------------- reading

ACTIVITY_SHOWN = 50


def view(event: AuditEvent) -> dict[str, object]:
    return {"id": event.id, "at": event.at.isoformat().replace("+00:00", "Z"),
            "event": event.event, "user_id": event.user_id, "actor": event.actor,
            "outcome": event.outcome, "ip": event.ip, "user_agent": event.user_agent,
            "request_id": event.request_id}


async def events(store: AuditStore, *, user_id: str | None, event: str | None,
                 after: datetime | None, limit: int | None,
                 cursor: str | None) -> dict[str, object]:
    """A page of events, newest first; ``next_cursor`` is null only on the last page."""
    size = limit or 50
    if after is not None and after.tzinfo is None:
        after = after.replace(tzinfo=UTC)  # a time without a zone is UTC
    page = await store.page(before_id=cursor, limit=size + 1, user_id=user_id, event=event,
                            after=after)
    shown = page[:size]
    return {"events": [view(e) for e in shown],
            "next_cursor": shown[-1].id if len(page) > size else None}


async def activity(store: AuditStore, user_id: str) -> dict[str, object]:
    """A user's own recent security events (``GET /v1/users/me/activity``)."""
    page = await store.page(before_id=None, limit=ACTIVITY_SHOWN, user_id=user_id)
    return {"events": [view(e) for e in page]}
