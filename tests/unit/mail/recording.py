"""An in-memory :class:`authnode.mail.MailSender` for tests of code that sends mail."""

from __future__ import annotations

from email.message import EmailMessage

import anyio.lowlevel

from authnode.mail import MailDeliveryError, OnAccepted


class RecordingSender:
    """Keeps every message it is given; ``fail_with`` makes the next sends raise it."""

    def __init__(self, fail_with: MailDeliveryError | None = None) -> None:
        self.sent: list[EmailMessage] = []
        self.fail_with = fail_with
        self.closed = False

    async def send(self, message: EmailMessage, on_accepted: OnAccepted | None = None) -> None:
        if self.closed:
            raise RuntimeError("send() after aclose()")
        await anyio.lowlevel.checkpoint()  # a real sender always yields
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(message)
        if on_accepted is not None:
            await on_accepted()

    async def aclose(self) -> None:
        self.closed = True

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.sent if str(m["To"]).lower() == address.lower()]

    def kinds(self) -> list[str]:
        return [str(m["X-Authnode-Kind"]) for m in self.sent]
