"""The worker side of email: decide what an email request becomes, and send it once.

The API queues one request per register / resend / forgot whatever the address, and this
module decides: no account, an already verified address, or too many emails to one
address recently all mean "send nothing". Links are minted here, at send time, so a token
exists in plain text only in the message itself, never in the job queue or a log.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from authnode.accounts.models import utc
from authnode.accounts.outbox import EmailKind
from authnode.mail import MailSender, render
from authnode.ratelimit import RateLimiter
from authnode.repositories.email_tokens import EmailTokenRepository
from authnode.repositories.sent_emails import SentEmailRepository
from authnode.repositories.users import UserRepository
from authnode.settings import Settings


@dataclass(frozen=True)
class Mailer:
    settings: Settings
    users: UserRepository
    email_tokens: EmailTokenRepository
    sent_emails: SentEmailRepository
    sender: MailSender
    limiter: RateLimiter
    clock: Callable[[], float] = field(default=time.time)


_LINK_KINDS: dict[str, str] = {"verify_email": "verify_email", "password_reset": "password_reset"}


async def deliver(mailer: Mailer, *, kind: EmailKind, email: str, user_id: str | None,
                  idempotency_key: str, first_attempt: bool) -> str:
    """Send the email the request asks for, at most once per key; return the outcome."""
    if await mailer.sent_emails.was_sent(idempotency_key):
        return "duplicate"
    user = (await mailer.users.by_id(user_id) if user_id
            else await mailer.users.by_email(email))
    reason = _why_not(kind, user)
    if reason is not None:
        return f"skipped:{reason}"
    assert user is not None
    if first_attempt:
        decision = await mailer.limiter.hit(f"email_{kind}", user["email"],
                                            mailer.settings.email_address_limit)
        if not decision.allowed:
            return "skipped:address_rate_limited"
    token, valid_for_s = await _mint_link_token(mailer, kind, user)
    message = render(kind, to=user["email"], mail_from=mailer.settings.mail_from,
                     public_url=mailer.settings.public_origin, token=token,
                     name=user.get("name"), valid_for_s=valid_for_s,
                     message_id_key=idempotency_key)

    async def record_sent() -> None:
        await mailer.sent_emails.record(idempotency_key, kind, utc(mailer.clock()))

    # Recorded the moment the server accepts it: a crash before the record makes a retry
    # send it again (with the same Message-ID), so that window is kept as short as it gets.
    await mailer.sender.send(message, on_accepted=record_sent)
    return "sent"


def _why_not(kind: EmailKind, user: dict[str, Any] | None) -> str | None:
    if user is None:
        return "no_account"
    if kind == "verify_email" and user.get("email_verified"):
        return "already_verified"
    if kind in ("verify_email", "password_reset") and user.get("disabled"):
        return "disabled"
    return None


async def _mint_link_token(mailer: Mailer, kind: EmailKind,
                           user: dict[str, Any]) -> tuple[str | None, int | None]:
    if kind not in _LINK_KINDS:
        return None, None
    valid_for_s = (mailer.settings.verify_email_token_ttl_s if kind == "verify_email"
                   else mailer.settings.email_token_ttl_s)
    token = secrets.token_urlsafe(32)
    now = utc(mailer.clock())
    await mailer.email_tokens.insert({
        "_id": hashlib.sha256(token.encode()).hexdigest(),
        "kind": kind, "user_id": user["_id"],
        "credential_version": user.get("credential_version", 1),
        "created_at": now, "expires_at": now + timedelta(seconds=valid_for_s), "used_at": None,
    })
    return token, valid_for_s
