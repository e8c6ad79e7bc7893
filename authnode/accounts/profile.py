"""The signed-in user's own account: profile, sessions, deletion."""

from __future__ import annotations

from typing import Any

from authnode.accounts.authentication import check_password, end_session
from authnode.accounts.context import Accounts
from authnode.accounts.models import Principal, clean_name, iso, public_user
from authnode.accounts.moderation import remove_account
from authnode.errors import (
    InvalidCredentials,
    InvalidToken,
    NotFound,
    ReauthenticationRequired,
)
from authnode.mfa import flows as mfa_flows


async def load_public_profile(accounts: Accounts, user_id: str) -> dict[str, Any] | None:
    """The cache's loader: a lag-tolerant read of one user, shaped for the API."""
    user = await accounts.users.by_id_for_display(user_id)
    if user is None:
        return None
    factors = await accounts.mfa.factors.get(user_id)
    return {**public_user(user), "mfa": mfa_flows.summary(factors)}


async def me(accounts: Accounts, principal: Principal) -> dict[str, Any]:
    profile = await accounts.profiles.get(principal.user_id, entry=principal.profile_entry)
    if profile is None:
        raise InvalidToken()
    return profile


async def rename(accounts: Accounts, principal: Principal, name: str | None) -> dict[str, Any]:
    cleaned = clean_name(name)
    await accounts.profiles.invalidate(principal.user_id)
    user = await accounts.users.update_name(principal.user_id, cleaned, accounts.now())
    if user is None:
        raise InvalidToken()
    accounts.audit.record("user.updated", user_id=user.id, outcome="name")
    return public_user(user)


async def delete_account(accounts: Accounts, principal: Principal, *, password: str,
                         ip: str) -> None:
    user = await accounts.users.by_id(principal.user_id)
    if user is None:
        raise InvalidToken()
    if not user.has_password:
        # Nothing to type: a sign-in within REAUTH_MAX_AGE_S stands in for the password.
        auth_time = principal.assurance.auth_time
        if auth_time is None or accounts.clock() - auth_time > accounts.settings.reauth_max_age_s:
            raise ReauthenticationRequired("This account has no password: sign in again "
                                           "with your provider, then delete it at once.")
    elif not await check_password(accounts, user, password, ip=ip):
        raise InvalidCredentials("The password is incorrect.")
    await remove_account(accounts, user.id)


async def list_sessions(accounts: Accounts, principal: Principal) -> list[dict[str, Any]]:
    sessions = await accounts.sessions.active_for_user(principal.user_id, accounts.now())
    return [
        {
            "id": session.id,
            "created_at": iso(session.created_at),
            "last_used_at": iso(session.last_used_at),
            "user_agent": session.user_agent,
            "ip": session.ip,
            "current": session.id == principal.session_id,
        }
        for session in sessions
    ]


async def delete_session(accounts: Accounts, principal: Principal, session_id: str) -> None:
    if not await end_session(accounts, principal.user_id, session_id):
        raise NotFound("No such session.")
