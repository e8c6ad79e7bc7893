"""How the account flows ask for an email: a request to the worker, never a send."""

from __future__ import annotations

from typing import Protocol

from authnode.mail.messages import EmailKind

__all__ = ["EmailKind", "EmailOutbox"]


class EmailOutbox(Protocol):
    async def request(self, kind: EmailKind, *, email: str, user_id: str | None = None,
                      registration_id: str | None = None) -> None:
        """Queue the email durably or raise ``Unavailable``; returning means it will be
        delivered (or, for an address with no matching account, deliberately skipped).
        ``registration_id``: the pending registration a ``verify_email`` is for."""
        ...
