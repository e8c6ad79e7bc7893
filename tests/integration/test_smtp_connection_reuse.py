"""SmtpSender keeps its SMTP connections between messages: RSET before each reuse, a new
connection when the old one was dropped, refuses RSET or has idled too long, and after a
bounded number of messages; every message arrives exactly once.

Against the suite's aiosmtpd recorder (``SmtpRecorder``), which numbers its connections
and can refuse RSET or drop the connection on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage

import pytest

from authnode.mail import MailDeliveryError, SmtpSender, render
from tests.services import SmtpRecorder

pytestmark = pytest.mark.anyio


def _message(index: int) -> EmailMessage:
    return render("password_reset", to=f"user{index}@example.com",
                  mail_from="authnode <no-reply@example.com>",
                  public_url="https://auth.example.com", token=f"token-{index:040d}",
                  valid_for_s=3600, message_id_key=f"job-{index}")


@pytest.fixture
async def recorder(smtp: SmtpRecorder) -> AsyncIterator[SmtpRecorder]:
    smtp.on_rset()
    smtp.connections = smtp.rsets = 0
    yield smtp
    smtp.on_rset()


async def _send(sender: SmtpSender, indexes: range, recorded: list[int] | None = None) -> None:
    for index in indexes:
        async def on_accepted(index: int = index) -> None:
            if recorded is not None:
                recorded.append(index)

        await sender.send(_message(index), on_accepted=on_accepted)


def _connections(recorder: SmtpRecorder) -> list[int]:
    return [message.connection for message in recorder.messages()]


def _assert_each_once(recorder: SmtpRecorder, count: int) -> None:
    received = sorted(message.to for message in recorder.messages())
    assert received == sorted(f"user{index}@example.com" for index in range(count))


async def test_messages_share_one_connection_with_rset_between(
        recorder: SmtpRecorder) -> None:
    sender = SmtpSender(recorder.url, timeout_s=5)
    recorded: list[int] = []
    await _send(sender, range(5), recorded)
    await sender.aclose()
    await recorder.wait_for_async(5, timeout=5)
    assert _connections(recorder) == [1] * 5
    assert recorder.rsets == 4 and recorded == list(range(5))
    _assert_each_once(recorder, 5)


async def test_a_connection_carries_a_bounded_number_of_messages(
        recorder: SmtpRecorder) -> None:
    sender = SmtpSender(recorder.url, timeout_s=5, max_messages_per_connection=2)
    await _send(sender, range(5))
    await sender.aclose()
    await recorder.wait_for_async(5, timeout=5)
    assert _connections(recorder) == [1, 1, 2, 2, 3]
    _assert_each_once(recorder, 5)


async def test_a_connection_dropped_between_messages_is_replaced(
        recorder: SmtpRecorder) -> None:
    sender = SmtpSender(recorder.url, timeout_s=5)
    await _send(sender, range(2))
    recorder.on_rset(drop_next=1)  # the server has closed the idle connection
    await _send(sender, range(2, 4))
    await sender.aclose()
    await recorder.wait_for_async(4, timeout=5)
    assert _connections(recorder) == [1, 1, 2, 2]
    _assert_each_once(recorder, 4)


async def test_a_server_refusing_rset_gets_a_new_connection_per_message(
        recorder: SmtpRecorder) -> None:
    recorder.on_rset("502 5.5.1 RSET not implemented")
    sender = SmtpSender(recorder.url, timeout_s=5)
    await _send(sender, range(3))
    await sender.aclose()
    await recorder.wait_for_async(3, timeout=5)
    assert _connections(recorder) == [1, 2, 3]
    _assert_each_once(recorder, 3)


async def test_a_connection_idle_too_long_is_not_tried(recorder: SmtpRecorder) -> None:
    sender = SmtpSender(recorder.url, timeout_s=5, max_idle_s=0)
    await _send(sender, range(2))
    await sender.aclose()
    await recorder.wait_for_async(2, timeout=5)
    assert _connections(recorder) == [1, 2] and recorder.rsets == 0


async def test_a_refused_message_closes_its_connection_and_the_next_one_opens_another(
        recorder: SmtpRecorder) -> None:
    sender = SmtpSender(recorder.url, timeout_s=5)
    await _send(sender, range(1))
    recorder.refuse_next(1)
    with pytest.raises(MailDeliveryError):
        await sender.send(_message(1))
    await _send(sender, range(1, 3))  # the job's retry of 1, then 2
    await sender.aclose()
    await recorder.wait_for_async(3, timeout=5)
    assert _connections(recorder) == [1, 2, 2]
    _assert_each_once(recorder, 3)


async def test_a_stopped_and_restarted_server_is_reconnected_to(
        recorder: SmtpRecorder) -> None:
    sender = SmtpSender(recorder.url, timeout_s=5)
    await _send(sender, range(1))
    recorder.stop()
    recorder.start()
    await _send(sender, range(1, 3))
    await sender.aclose()
    await recorder.wait_for_async(3, timeout=5)
    assert _connections(recorder)[0] != _connections(recorder)[1]
    _assert_each_once(recorder, 3)


async def test_one_connection_per_message_when_asked(recorder: SmtpRecorder) -> None:
    sender = SmtpSender(recorder.url, timeout_s=5, max_messages_per_connection=1)
    await _send(sender, range(3))
    await recorder.wait_for_async(3, timeout=5)
    assert _connections(recorder) == [1, 2, 3] and recorder.rsets == 0
    await sender.aclose()


async def test_sends_after_aclose_keep_no_connection(recorder: SmtpRecorder) -> None:
    sender = SmtpSender(recorder.url, timeout_s=5)
    await sender.aclose()
    await _send(sender, range(2))
    await recorder.wait_for_async(2, timeout=5)
    assert _connections(recorder) == [1, 2]
