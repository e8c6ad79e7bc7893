"""Registering an account and confirming its email address.

Register, resend and forgot answer the same whatever the address: the API always hashes
the password and inserts a pending registration (register), and always queues exactly one
job; the worker decides what, if anything, to send. So neither the response nor its
timing tells whether an account exists.

No account exists until an address is confirmed. Each registration is kept as it was
made (see repositories/registrations), and its link, when confirmed, creates the account
with that registration's password and name: registering an address again never changes
what an earlier link does. The first link confirmed wins (the address-lookup insert is
atomic); the other registrations of the address are deleted then, and their links die.
So somebody who registers another person's address gets nothing unless that person
confirms the attacker's link themselves — and the email says when it was asked for and
to ignore it if that was not them.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from authnode.accounts.context import Accounts
from authnode.accounts.models import clean_name, lookup_email, normalize_email, public_user
from authnode.accounts.outbox import EmailKind
from authnode.errors import InvalidEmailToken
from authnode.repositories.records import Registration, User, new_registration_id, new_user_id

MAX_EMAIL_TOKEN_CHARS = 256


async def register(accounts: Accounts, *, email: str, password: str, name: str | None,
                   ip: str) -> None:
    address = normalize_email(email)
    display_name = clean_name(name)
    accounts.policy.check(password, email=address)
    await accounts.limiter.check("register_ip", ip, accounts.settings.register_ip_limit)
    password_hash = await accounts.hasher.hash(password)
    now = accounts.now()
    registration_id = new_registration_id()
    await accounts.registrations.insert(Registration(
        id=registration_id, email=address, name=display_name, password_hash=password_hash,
        created_at=now,
        expires_at=now + timedelta(seconds=EmailKind.VERIFY_EMAIL.link_ttl_s(accounts.settings)),
    ))
    try:
        await accounts.outbox.request(EmailKind.VERIFY_EMAIL, email=address,
                                      registration_id=registration_id)
    except BaseException:
        # The email could not be queued: undo, so that "202" always means "sent".
        await accounts.registrations.delete(registration_id)
        raise
    accounts.audit.record("user.registration_requested", user_id=None)


async def resend_verification(accounts: Accounts, *, email: str, ip: str) -> None:
    await accounts.limiter.check("resend_ip", ip, accounts.settings.resend_ip_limit)
    await accounts.outbox.request(EmailKind.VERIFY_EMAIL, email=lookup_email(email))


def email_token_hash(token: str) -> str:
    if not isinstance(token, str) or not 16 <= len(token) <= MAX_EMAIL_TOKEN_CHARS:
        raise InvalidEmailToken()
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def link_is_usable(accounts: Accounts, *, token: str) -> bool:
    """Whether a verification link is unspent and unexpired (reads only: the page a GET
    shows). Confirming may still fail, if another link of the address wins first."""
    try:
        token_hash = email_token_hash(token)
    except InvalidEmailToken:
        return False
    return await accounts.email_tokens.is_usable(token_hash, EmailKind.VERIFY_EMAIL, accounts.now())


async def verify_email(accounts: Accounts, *, token: str) -> dict[str, Any]:
    """Confirm an address with a link's token; returns the account (USER)."""
    now = accounts.now()
    spent = await accounts.email_tokens.consume(email_token_hash(token), EmailKind.VERIFY_EMAIL,
                                                now)
    if spent is None:
        raise InvalidEmailToken()
    if spent.registration_id:
        activated = await _activate(accounts, spent.registration_id)
        accounts.audit.record("user.email_verified", user_id=activated.id)
        return public_user(activated)
    # A link sent before registrations were kept apart names an existing, unverified
    # account; it verifies that account unless its password changed since.
    if spent.user_id is None or spent.credential_version is None:
        raise InvalidEmailToken()  # names nothing (no link has been written so)
    await accounts.profiles.invalidate(spent.user_id)
    user = await accounts.users.mark_verified(spent.user_id, spent.credential_version, now)
    if user is None:
        raise InvalidEmailToken()
    accounts.audit.record("user.email_verified", user_id=user.id)
    return public_user(user)


async def _activate(accounts: Accounts, registration_id: str) -> User:
    now = accounts.now()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as BSON stores it
    registration = await accounts.registrations.live(registration_id, now)
    if registration is None:  # another link of the address won, or it expired
        raise InvalidEmailToken()
    user = User(
        id=new_user_id(), email=registration.email, name=registration.name,
        password_hash=registration.password_hash, email_verified=True, disabled=False,
        credential_version=1, created_at=now, updated_at=now,
    )
    if not await accounts.users.create(user, now):
        raise InvalidEmailToken()  # the address has an account: this link lost
    # Every other pending registration of the address (and so its link) dies now.
    await accounts.registrations.delete_for_email(registration.email)
    return user
