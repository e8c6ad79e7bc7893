"""Which security events are webhook events: the audit log's writer hands each batch it
stored to :func:`emitter`, which queues a delivery per matching endpoint. So the account
flows name each event once (in the audit log), and no request waits on the job queue for
a webhook. The price: an event still in the audit queue when its process dies is lost to
both (counted, see :mod:`authnode.operators.audit`); once queued, delivery is at least once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from authnode.repositories.records import AuditEvent
from authnode.webhooks.delivery import Webhooks
from authnode.webhooks.events import Event, WebhookEvent

log = logging.getLogger(__name__)

# audit event -> the webhook events it is (an account exists once its address is verified)
WEBHOOK_EVENTS: dict[str, tuple[WebhookEvent, ...]] = {
    "user.email_verified": (WebhookEvent.USER_CREATED, WebhookEvent.USER_VERIFIED),
    "user.updated": (WebhookEvent.USER_UPDATED,),
    "user.deleted": (WebhookEvent.USER_DELETED,),
    "password.changed": (WebhookEvent.USER_PASSWORD_CHANGED,),
    "password.reset": (WebhookEvent.USER_PASSWORD_CHANGED,),
    "session.ended": (WebhookEvent.SESSION_REVOKED,),
    "sessions.ended_all": (WebhookEvent.SESSION_REVOKED,),
    "login.locked": (WebhookEvent.USER_LOCKED,),
}


def webhook_events(event: AuditEvent) -> list[Event]:
    if event.user_id is None:
        return []
    return [Event.new(kind, event.user_id, epoch_s=event.at.timestamp(),
                      audit_event_id=event.id)
            for kind in WEBHOOK_EVENTS.get(event.event, ())]


def emitter(webhooks: Webhooks, on_failure: Callable[[], None]
            ) -> Callable[[list[AuditEvent]], Awaitable[None]]:
    async def emit(batch: list[AuditEvent]) -> None:
        for audit_event in batch:
            for event in webhook_events(audit_event):
                try:
                    await webhooks.emit(event)
                except Exception as error:  # the job queue is down: counted, logged
                    on_failure()
                    log.error("webhook event not queued", extra={
                        "event": str(event.type), "user_id": audit_event.user_id,
                        "outcome": type(error).__name__})

    return emit
