"""The event payload and its sortable ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from authnode.webhooks.events import Event, WebhookEvent

NAMES = ["user.created", "user.verified", "user.updated", "user.deleted",
         "user.password_changed", "session.revoked", "user.locked"]


def test_the_event_names_are_the_issue_s() -> None:
    assert [str(e) for e in WebhookEvent] == NAMES


def test_payload_shape() -> None:
    event = Event(id="evt_01KT2X7V1V0000000000000000", type=WebhookEvent.SESSION_REVOKED,
                  occurred_at=datetime(2026, 6, 1, 12, 0, 0, 123000, tzinfo=UTC),
                  data={"user_id": "u1", "session_id": "s1"})
    payload = json.loads(event.body())
    assert payload == {"id": event.id, "type": "session.revoked",
                       "timestamp": "2026-06-01T12:00:00.123Z",
                       "data": {"user_id": "u1", "session_id": "s1"}}
    new = Event.new(WebhookEvent.SESSION_REVOKED, "u1", session_id="s1")
    assert new.id.startswith("evt_") and len(new.id) == 4 + 26
    assert new.data == event.data and new.occurred_at.microsecond % 1000 == 0
    assert Event.from_payload(payload) == event
    assert Event.from_payload(payload).body() == event.body(), "the same bytes every attempt"


def test_ids_sort_in_the_order_events_happened() -> None:
    same_ms = [Event.new(WebhookEvent.USER_UPDATED, "u1", epoch_s=1780315200.5)
               for _ in range(50)]
    later = Event.new(WebhookEvent.USER_DELETED, "u1", epoch_s=1780315200.501)
    ids = [e.id for e in [*same_ms, later]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # A clock that steps back does not make ids go back either.
    earlier_clock = Event.new(WebhookEvent.USER_LOCKED, "u1", epoch_s=1780315100.0)
    assert earlier_clock.id > later.id


def test_an_id_sorts_by_its_millisecond() -> None:
    first = Event.new(WebhookEvent.USER_CREATED, "u", epoch_s=4102444800.0)  # 2100
    second = Event.new(WebhookEvent.USER_CREATED, "u", epoch_s=4102444800.002)
    assert first.id < second.id
    assert first.occurred_at < second.occurred_at
