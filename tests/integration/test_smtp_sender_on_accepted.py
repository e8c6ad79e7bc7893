"""SmtpSender's ``on_accepted``: awaited right after the server accepted the message (the
DATA reply), before the connection is kept for the next message or QUIT; its exceptions
propagate unchanged, and close the connection.

The worker records a sent email there, so that a crash between the acceptance and the
record (which makes a retry send the message again) has the shortest possible window.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from authnode.mail import MailDeliveryError, SmtpSender, render
from tests.services import HOST, free_port

pytestmark = pytest.mark.anyio


class _Events:
    """An SMTP server that accepts everything and notes DATA and QUIT, in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.append("DATA")
        return "250 accepted"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.append("QUIT")
        return "221 Bye"


@pytest.fixture
def server() -> Iterator[tuple[str, _Events]]:
    events = _Events()
    port = free_port()
    controller = Controller(events, hostname=HOST, port=port, ready_timeout=10.0)
    controller.start()
    yield f"smtp://{HOST}:{port}", events
    controller.stop()


def _message() -> Any:
    return render("verify_email", to="bob@example.com", mail_from="no-reply@example.com",
                  public_url="https://auth.example.com", token="t" * 43, name=None,
                  requested_at=datetime(2026, 12, 3, 20, 5, tzinfo=UTC),
                  valid_for_s=3600, message_id_key="job-9")


async def test_on_accepted_runs_after_data_and_before_the_connection_is_kept(
        server: tuple[str, _Events]) -> None:
    url, events = server
    seen_when_called: list[list[str]] = []

    async def on_accepted() -> None:
        seen_when_called.append(list(events.seen))

    sender = SmtpSender(url, timeout_s=5)
    await sender.send(_message(), on_accepted=on_accepted)
    assert seen_when_called == [["DATA"]]
    await sender.aclose()  # the connection was kept for the next message until now
    assert events.seen == ["DATA", "QUIT"]


async def test_on_accepted_errors_propagate_unchanged_and_the_connection_is_closed(
        server: tuple[str, _Events]) -> None:
    url, events = server

    class RecordFailed(Exception):
        pass

    async def on_accepted() -> None:
        raise RecordFailed

    with pytest.raises(RecordFailed):
        await SmtpSender(url, timeout_s=5).send(_message(), on_accepted=on_accepted)
    assert events.seen == ["DATA", "QUIT"]


async def test_on_accepted_is_not_called_when_the_server_refuses(
        server: tuple[str, _Events]) -> None:
    url, events = server
    called: list[bool] = []

    async def refuse(server_: Any, session: Any, envelope: Any) -> str:
        events.seen.append("DATA")
        return "451 4.3.0 try later"

    events.handle_DATA = refuse  # type: ignore[method-assign]

    async def on_accepted() -> None:
        called.append(True)

    with pytest.raises(MailDeliveryError):
        await SmtpSender(url, timeout_s=5).send(_message(), on_accepted=on_accepted)
    assert called == []
