"""What an operator (or the user, for deletion) does to a whole account."""

from __future__ import annotations

from authnode.accounts.authentication import end_all_sessions
from authnode.accounts.context import Accounts
from authnode.accounts.models import lookup_email
from authnode.errors import NotFound
from authnode.repositories.records import User


async def find_by_email(accounts: Accounts, email: str) -> User:
    user = await accounts.users.by_email(lookup_email(email))
    if user is None:
        raise NotFound("No account has this email address.")
    return user


async def set_disabled(accounts: Accounts, user_id: str, disabled: bool) -> User:
    """Disable (login refused, every session ended at once) or enable an account.

    Disabling writes the revocation cutoff first: refreshes do not read the user from
    MongoDB (they read the cutoff), so whichever write below fails, no session of the
    account is refreshed any more."""
    await accounts.profiles.invalidate(user_id)
    if disabled:
        await accounts.revocations.revoke_user(user_id, accounts.clock())
    user = await accounts.users.set_disabled(user_id, disabled, accounts.now())
    if user is None:
        raise NotFound("No such account.")
    if disabled:
        await end_all_sessions(accounts, user_id)
    else:
        # Every session was ended one by one when the account was disabled.
        await accounts.revocations.lift_user_cutoff(user_id)
    accounts.audit.record("user.disabled" if disabled else "user.enabled", user_id=user_id)
    return user


async def remove_account(accounts: Accounts, user_id: str) -> None:
    """Delete the account, its sessions and its links; its access tokens die at once.
    The address is free again; an account registered with it later gets a new id. The
    cutoff first, so that no refresh of its sessions succeeds whichever write fails."""
    await accounts.revocations.revoke_user(user_id, accounts.clock())
    await end_all_sessions(accounts, user_id)
    await accounts.profiles.invalidate(user_id)
    await accounts.sessions.delete_for_user(user_id)
    await accounts.email_tokens.delete_for_user(user_id)
    await accounts.mfa.factors.delete(user_id)
    await accounts.identities.delete_for_user(user_id)
    await accounts.users.delete(user_id)
    accounts.audit.record("user.deleted", user_id=user_id)
