"""User administration: what the admin API and the ``authnode users`` commands both call.

Every function takes the opened :class:`~authnode.accounts.context.Accounts` and records
what it did in the audit log (the actor is bound by the caller: the admin key's name, or
"operator" for the CLI).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from authnode.accounts import moderation
from authnode.accounts.authentication import end_all_sessions, end_session
from authnode.accounts.context import Accounts
from authnode.accounts.models import iso, lookup_email, normalize_email, public_user
from authnode.accounts.outbox import EmailKind
from authnode.errors import InvalidRequest, NotFound
from authnode.mfa import flows as mfa_flows
from authnode.repositories.records import User

MAX_PAGE = 200
DEFAULT_PAGE = 50


async def _user(accounts: Accounts, user_id: str) -> User:
    user = await accounts.users.by_id(user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def describe(accounts: Accounts, user: User) -> dict[str, Any]:
    """A user as support sees it: profile, state, second factors, sessions, last login."""
    now = accounts.now()
    live = await accounts.sessions.live_ids_for_user(user.id, now)
    recent = await accounts.sessions.active_for_user(user.id, now)
    factors = await accounts.mfa.factors.get(user.id)
    return {**public_user(user), "disabled": user.disabled,
            "mfa": mfa_flows.summary(factors), "live_sessions": len(live),
            "last_login_at": iso(recent[0].created_at) if recent else None,
            "identities": []}


async def find(accounts: Accounts, *, email: str | None, email_prefix: str | None,
               created_after: datetime | None, limit: int | None,
               cursor: str | None) -> dict[str, Any]:
    """A page of users in id order; ``next_cursor`` is null only on the last page."""
    size = DEFAULT_PAGE if limit is None else limit
    if not 1 <= size <= MAX_PAGE:
        raise InvalidRequest(f"limit: expected 1 to {MAX_PAGE}")
    exact = normalize_email(email) if email is not None else None
    prefix = email_prefix.strip().lower() if email_prefix is not None else None
    if prefix is not None and not prefix:
        raise InvalidRequest("email_prefix: expected at least one character")
    if created_after is not None and created_after.tzinfo is None:
        created_after = created_after.replace(tzinfo=UTC)  # a time without a zone is UTC
    page = await accounts.users.page(after_id=cursor, limit=size + 1, email=exact,
                                     email_prefix=prefix, created_after=created_after)
    more = len(page) > size
    shown = page[:size]
    return {"users": [{**public_user(u), "disabled": u.disabled} for u in shown],
            "next_cursor": shown[-1].id if more else None}


async def detail(accounts: Accounts, user_id: str) -> dict[str, Any]:
    return await describe(accounts, await _user(accounts, user_id))


async def set_disabled(accounts: Accounts, user_id: str, disabled: bool) -> dict[str, Any]:
    user = await moderation.set_disabled(accounts, user_id, disabled)
    return await describe(accounts, user)


async def unlock(accounts: Accounts, user_id: str) -> dict[str, Any]:
    """Clear the account's lockouts: password failures from every address, and wrong
    second-factor codes."""
    user = await _user(accounts, user_id)
    cleared = await accounts.limiter.clear_lockout(lookup_email(user.email))
    cleared += await accounts.limiter.clear_lockout(f"mfa:{user.id}")
    accounts.audit.record("user.unlocked", user_id=user.id, outcome=f"{cleared} counter(s)")
    return await describe(accounts, user)


async def revoke_sessions(accounts: Accounts, user_id: str,
                          session_id: str | None) -> dict[str, Any]:
    user = await _user(accounts, user_id)
    if session_id is None:
        await end_all_sessions(accounts, user.id)
    elif not await end_session(accounts, user.id, session_id):
        raise NotFound("No such live session of this user.")
    return await describe(accounts, user)


async def send_password_reset(accounts: Accounts, user_id: str) -> dict[str, Any]:
    user = await _user(accounts, user_id)
    await accounts.outbox.request(EmailKind.PASSWORD_RESET, email=user.email, user_id=user.id)
    accounts.audit.record("password.reset_sent", user_id=user.id)
    return await describe(accounts, user)


async def reset_second_factors(accounts: Accounts, user_id: str) -> dict[str, Any]:
    user = await _user(accounts, user_id)
    removed = await mfa_flows.reset(accounts, user.id, by="admin")
    return {**await describe(accounts, user), "second_factors_removed": removed}


async def delete(accounts: Accounts, user_id: str) -> None:
    user = await _user(accounts, user_id)
    await moderation.remove_account(accounts, user.id)
