"""The worker side of email: decide what an email request becomes, and send it once.

The API queues one request per register / resend / forgot whatever the address, and this
module decides: no account, an already verified address, or too many emails to one
address recently all mean "send nothing"; a registration of an address that has an
account becomes an "already registered" notice. Links are minted here, at send time, so
a token exists in plain text only in the message itself, never in the job queue or a log.

A display name is chosen by whoever registered, so it is written only in emails to an
address whose owner has confirmed it: never in a verification email, nor in any email to
an unverified account (it could be a stranger's words in the owner's mailbox).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from authnode.accounts.models import utc
from authnode.accounts.outbox import EmailKind
from authnode.mail import MailSender, render
from authnode.repositories.protocols import (
    EmailTokenStore,
    RegistrationStore,
    SentEmailStore,
    UserStore,
)
from authnode.repositories.records import EmailToken, Registration, User
from authnode.settings import Settings
from authnode.shared.ratelimit import RateLimiter


@dataclass(frozen=True)
class Mailer:
    settings: Settings
    users: UserStore
    email_tokens: EmailTokenStore
    registrations: RegistrationStore
    sent_emails: SentEmailStore
    sender: MailSender
    limiter: RateLimiter
    clock: Callable[[], float] = field(default=time.time)


@dataclass(frozen=True)
class _Plan:
    """What one request becomes: a kind of email to an address, and what it needs."""

    kind: EmailKind
    to: str
    name: str | None = None
    user: User | None = None  # the account a link is for
    registration: Registration | None = None  # or the pending registration


async def deliver(mailer: Mailer, *, kind: EmailKind, email: str, user_id: str | None,
                  idempotency_key: str, first_attempt: bool,
                  registration_id: str | None = None) -> str:
    """Send the email the request asks for, at most once per key; return the outcome.

    Only a later attempt asks whether the key was sent: a first attempt cannot have been
    (every run after the first, a retry or a stalled job requeued, counts an attempt in
    procrastinate, and ``authnode jobs retry`` queues a new job with a new key), so the
    usual job makes one store round trip fewer."""
    if not first_attempt and await mailer.sent_emails.was_sent(idempotency_key):
        return "duplicate"
    now = utc(mailer.clock())
    plan = await (_plan_registration(mailer, registration_id, now) if registration_id
                  else _plan_account(mailer, kind, email, user_id, now))
    if isinstance(plan, str):
        return f"skipped:{plan}"
    if first_attempt:
        decision = await mailer.limiter.hit(f"email_{plan.kind}", plan.to,
                                            mailer.settings.email_address_limit)
        if not decision.allowed:
            return "skipped:address_rate_limited"
    token, valid_for_s, requested_at = await _mint_link_token(mailer, plan, now)
    message = render(plan.kind, to=plan.to, mail_from=mailer.settings.mail_from,
                     public_url=mailer.settings.public_origin, token=token,
                     name=plan.name, valid_for_s=valid_for_s, requested_at=requested_at,
                     message_id_key=idempotency_key)

    async def record_sent() -> None:
        await mailer.sent_emails.record(idempotency_key, plan.kind, utc(mailer.clock()))

    # Recorded the moment the server accepts it: a crash before the record makes a retry
    # send it again (with the same Message-ID), so that window is kept as short as it gets.
    await mailer.sender.send(message, on_accepted=record_sent)
    return "sent"


async def _plan_registration(mailer: Mailer, registration_id: str,
                             now: datetime) -> _Plan | str:
    """A registration gets a link bound to it, unless its address has an account: then
    the owner gets a notice, and the registration is dropped (it can never win)."""
    registration = await mailer.registrations.live(registration_id, now)
    if registration is None:
        return "no_registration"  # expired, or another link of the address won
    user = await mailer.users.by_email(registration.email)
    if user is None:
        return _Plan(EmailKind.VERIFY_EMAIL, registration.email, registration=registration)
    await mailer.registrations.delete(registration_id)
    return _Plan(EmailKind.ALREADY_REGISTERED, user.email, name=_name_for(user))


async def _plan_account(mailer: Mailer, kind: EmailKind, email: str, user_id: str | None,
                        now: datetime) -> _Plan | str:
    user = await mailer.users.by_id(user_id) if user_id else await mailer.users.by_email(email)
    if user is None and kind is EmailKind.VERIFY_EMAIL and not user_id:
        # Resend for an address without an account: a new link for its newest
        # registration (earlier links of that and other registrations still work).
        registration = await mailer.registrations.newest_live(email, now)
        if registration is not None:
            return _Plan(EmailKind.VERIFY_EMAIL, registration.email, registration=registration)
    reason = _why_not(kind, user)
    if reason is not None:
        return reason
    assert user is not None
    return _Plan(kind, user.email, name=_name_for(user), user=user)


def _name_for(user: User) -> str | None:
    return user.name if user.email_verified else None


def _why_not(kind: EmailKind, user: User | None) -> str | None:
    if user is None:
        return "no_account"
    if kind is EmailKind.VERIFY_EMAIL and user.email_verified:
        return "already_verified"
    if kind.has_token and user.disabled:
        return "disabled"
    return None


async def _mint_link_token(mailer: Mailer, plan: _Plan, now: datetime
                           ) -> tuple[str | None, int | None, datetime | None]:
    """The link's token, its lifetime, and (verification) when the account was asked for."""
    if not plan.kind.has_token:
        return None, None, None
    valid_for_s = plan.kind.link_ttl_s(mailer.settings)
    token = secrets.token_urlsafe(32)
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    expires_at = now + timedelta(seconds=valid_for_s)
    if plan.registration is not None:
        record = EmailToken(id=token_hash, kind=plan.kind, created_at=now,
                            expires_at=expires_at, registration_id=plan.registration.id)
        requested_at = plan.registration.created_at
        await mailer.registrations.extend(plan.registration.id, expires_at)
    else:
        assert plan.user is not None
        record = EmailToken(id=token_hash, kind=plan.kind, created_at=now,
                            expires_at=expires_at, user_id=plan.user.id,
                            credential_version=plan.user.credential_version)
        requested_at = plan.user.created_at or now
    await mailer.email_tokens.insert(record)
    return token, valid_for_s, requested_at if plan.kind is EmailKind.VERIFY_EMAIL else None
