"""What a webhook says: the event names and the JSON body.

The body of every event::

    {"id": "evt_01JZ...", "type": "user.created",
     "timestamp": "2026-06-01T12:00:00.123Z", "data": {"user_id": "...", ...}}

Ordering: receivers may get a user's events out of order (retries, several workers), so
each event carries what is needed to put them back in order: ``id`` is ULID-like (48 bits
of milliseconds then 80 random bits, Crockford base32, ``evt_`` prefix), so sorting ids as
strings sorts events by when they happened; within one process ids only grow, even within
a millisecond. ``timestamp`` is the same moment as ISO 8601 with milliseconds. Two events
of one user come from requests that follow each other (the second starts after the first
was answered), so their ids sort in order unless two hosts' clocks disagree by more than
the time between them. The ``id`` is also the ``webhook-id`` of every delivery of the
event: receivers drop repeats by it.
"""

from __future__ import annotations

import enum
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
EVENT_ID_PREFIX = "evt_"


class WebhookEvent(enum.StrEnum):
    USER_CREATED = "user.created"
    USER_VERIFIED = "user.verified"
    USER_UPDATED = "user.updated"
    USER_DELETED = "user.deleted"
    USER_PASSWORD_CHANGED = "user.password_changed"  # noqa: S105  (an event name)
    SESSION_REVOKED = "session.revoked"
    USER_LOCKED = "user.locked"


class _Ids:
    """Monotonic ULID-like ids: a later call never returns a smaller one in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = (0, 0)

    def new(self, now_ms: int) -> tuple[str, int]:
        with self._lock:
            last_ms, last_random = self._last
            if now_ms <= last_ms:  # same millisecond (or the clock stepped back)
                now_ms, random_part = last_ms, last_random + 1
            else:
                random_part = secrets.randbits(_RANDOM_BITS - 1)  # room to count up
            self._last = (now_ms, random_part)
        value = (now_ms << _RANDOM_BITS) | random_part
        text = "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
        return EVENT_ID_PREFIX + text, now_ms


_ids = _Ids()


def iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    id: str
    type: WebhookEvent
    occurred_at: datetime  # whole milliseconds, UTC
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, type: WebhookEvent, user_id: str, *, epoch_s: float | None = None,
            **data: Any) -> Event:
        """A new event about ``user_id``; ``data``: more JSON fields (never secrets)."""
        event_id, ms = _ids.new(int((time.time() if epoch_s is None else epoch_s) * 1000))
        return cls(id=event_id, type=WebhookEvent(type),
                   occurred_at=datetime.fromtimestamp(ms / 1000, UTC),
                   data={"user_id": user_id, **data})

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "type": str(self.type), "timestamp": iso_ms(self.occurred_at),
                "data": self.data}

    def body(self) -> bytes:
        """The exact bytes POSTed (and signed): the same for every attempt."""
        return json.dumps(self.payload(), separators=(",", ":"), sort_keys=True,
                          ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Event:
        occurred_at = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
        return cls(id=payload["id"], type=WebhookEvent(payload["type"]),
                   occurred_at=occurred_at, data=dict(payload["data"]))
