"""What a running worker hands to its tasks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from authnode.accounts.emails import Mailer
from authnode.repositories.protocols import AuditStore, SessionStore
from authnode.settings import Settings
from authnode.tokens.keyring import KeyRing
from authnode.webhooks.delivery import WebhookDeliverer


def _ignore(task: str, outcome: str, seconds: float) -> None:
    return None


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    mailer: Mailer
    sessions: SessionStore
    keyring: KeyRing
    audit: AuditStore
    observe_job: Callable[[str, str, float], None] = field(default=_ignore)
    webhooks: WebhookDeliverer | None = None
