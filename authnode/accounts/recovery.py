"""Forgotten, reset and changed passwords."""

from __future__ import annotations

import logging

from authnode.accounts.authentication import check_password, end_all_sessions
from authnode.accounts.context import Accounts
from authnode.accounts.models import Principal, lookup_email, utc
from authnode.accounts.outbox import EmailKind
from authnode.accounts.registration import email_token_hash
from authnode.errors import (
    InvalidCredentials,
    InvalidEmailToken,
    InvalidToken,
    NoPassword,
    Unavailable,
)
from authnode.repositories.records import User

log = logging.getLogger(__name__)


async def forgot_password(accounts: Accounts, *, email: str, ip: str) -> None:
    await accounts.limiter.check("forgot_ip", ip, accounts.settings.forgot_ip_limit)
    await accounts.outbox.request(EmailKind.PASSWORD_RESET, email=lookup_email(email))


async def reset_password(accounts: Accounts, *, token: str, password: str) -> None:
    token_hash = email_token_hash(token)
    # Check the password before spending the link, so a weak choice does not burn it.
    if not await accounts.email_tokens.is_usable(token_hash, EmailKind.PASSWORD_RESET,
                                                 accounts.now()):
        raise InvalidEmailToken()
    user = await _token_user(accounts, token_hash)
    accounts.policy.check(password, email=user.email)
    password_hash = await accounts.hasher.hash(password)
    # The cutoff first: whichever write below fails, no access token of the old sessions
    # works any more, and their refreshes are refused once the password has changed.
    cutoff = accounts.clock()
    await accounts.revocations.revoke_user(user.id, cutoff)
    spent = await accounts.email_tokens.consume(token_hash, EmailKind.PASSWORD_RESET,
                                                accounts.now())
    if spent is None:
        await _lift_cutoff(accounts, user.id, cutoff)  # nothing changed after all
        raise InvalidEmailToken()
    await accounts.profiles.invalidate(user.id)
    # Whoever holds the link holds the mailbox: the address counts as verified. A link
    # issued before the password last changed (another reset, a change) is dead.
    updated = await accounts.users.set_password(
        user.id, password_hash, accounts.now(), verify_email=True,
        expected_version=1 if spent.credential_version is None else spent.credential_version)
    if updated is None:
        await _lift_cutoff(accounts, user.id, cutoff)
        raise InvalidEmailToken()
    await end_all_sessions(accounts, user.id)
    await _lift_cutoff(accounts, user.id, cutoff)
    accounts.audit.record("password.reset", user_id=user.id)
    await accounts.outbox.request(EmailKind.PASSWORD_CHANGED, email=user.email, user_id=user.id)


async def _lift_cutoff(accounts: Accounts, user_id: str, cutoff: float) -> None:
    """Lift ``cutoff`` (if it is still the one in force), written before a password
    write, once that write is refused or
    every old session is revoked one by one: left in place it would also refuse a login
    made in the same second (see revocations). A store failure before this point leaves
    it in force: it refuses too much, never too little, and expires with the access
    tokens it concerns."""
    try:
        await accounts.revocations.lift_user_cutoff(user_id, only=cutoff)
    except Unavailable:
        log.warning("revocation cutoff not lifted after a password change",
                    extra={"user_id": user_id})


async def _token_user(accounts: Accounts, token_hash: str) -> User:
    owner = await accounts.email_tokens.owner(token_hash)
    user = await accounts.users.by_id(owner) if owner else None
    if user is None:
        raise InvalidEmailToken()
    return user


async def change_password(accounts: Accounts, principal: Principal, *, current_password: str,
                          new_password: str, ip: str) -> None:
    user = await accounts.users.by_id(principal.user_id)
    if user is None:
        raise InvalidToken()
    if not user.has_password:
        raise NoPassword()
    if not await check_password(accounts, user, current_password, ip=ip):
        raise InvalidCredentials("The current password is incorrect.")
    accounts.policy.check(new_password, email=user.email)
    password_hash = await accounts.hasher.hash(new_password)
    # This session proves the password now, so it outlives the change; then the cutoff,
    # so that no failure below leaves another session's access token working.
    cutoff = accounts.clock()
    await accounts.sessions.confirm_credentials(principal.session_id, user.id,
                                                utc(cutoff))
    await accounts.revocations.revoke_user(user.id, cutoff)
    updated = await accounts.users.set_password(user.id, password_hash, utc(cutoff),
                                                expected_hash=user.password_hash)
    if updated is None:
        await _lift_cutoff(accounts, user.id, cutoff)
        raise InvalidCredentials("The password changed meanwhile; try again.")
    await end_all_sessions(accounts, user.id, except_session=principal.session_id)
    await _lift_cutoff(accounts, user.id, cutoff)
    accounts.audit.record("password.changed", user_id=user.id)
    await accounts.outbox.request(EmailKind.PASSWORD_CHANGED, email=user.email, user_id=user.id)
