"""Registering an account and verifying its email address.

Register, resend and forgot answer the same whatever the address: the API always hashes
the password (register) and always queues exactly one job, and the worker decides what, if
anything, to send. So neither the response nor its timing tells whether an account exists.
"""

from __future__ import annotations

import hashlib
from typing import Any

from authnode.accounts.context import Accounts
from authnode.accounts.models import clean_name, lookup_email, normalize_email, public_user
from authnode.errors import InvalidEmailToken

MAX_EMAIL_TOKEN_CHARS = 256


async def register(accounts: Accounts, *, email: str, password: str, name: str | None,
                   ip: str) -> None:
    address = normalize_email(email)
    display_name = clean_name(name)
    accounts.policy.check(password, email=address)
    await accounts.limiter.check("register_ip", ip, accounts.settings.register_ip_limit)
    password_hash = await accounts.hasher.hash(password)
    now = accounts.now()
    user_id = accounts.users.id_for_email(address)
    user: dict[str, Any] = {
        "_id": user_id, "email": address, "name": display_name,
        "password_hash": password_hash, "email_verified": False, "disabled": False,
        "credential_version": 1, "created_at": now, "updated_at": now,
    }
    inserted = await accounts.users.insert(user)
    # Both paths run this conditional update, so a registration costs the same database
    # work whether or not the address has an account (FerretDB v1 evaluates a filter with
    # more than _id by scanning, which otherwise made known addresses measurably slower).
    # For a new account it is a no-op in effect: it sets the password it already has.
    replaced = await accounts.users.replace_unverified_password(address, password_hash, now)
    if inserted:
        try:
            await accounts.outbox.request("verify_email", email=address, user_id=user_id)
        except BaseException:
            # The email could not be queued: undo, so that "202" always means "sent".
            await accounts.users.delete(user_id)
            raise
        return
    # The address has an account already. A still-unverified one takes the new password
    # and gets a fresh link (earlier links die); a verified one gets a notice, not a link.
    if replaced is not None:
        await accounts.profiles.invalidate(replaced["_id"])
        await accounts.outbox.request("verify_email", email=address, user_id=replaced["_id"])
    else:
        await accounts.outbox.request("already_registered", email=address)


async def resend_verification(accounts: Accounts, *, email: str, ip: str) -> None:
    await accounts.limiter.check("resend_ip", ip, accounts.settings.resend_ip_limit)
    await accounts.outbox.request("verify_email", email=lookup_email(email))


def email_token_hash(token: str) -> str:
    if not isinstance(token, str) or not 16 <= len(token) <= MAX_EMAIL_TOKEN_CHARS:
        raise InvalidEmailToken()
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def verify_email(accounts: Accounts, *, token: str) -> dict[str, Any]:
    now = accounts.now()
    spent = await accounts.email_tokens.consume(email_token_hash(token), "verify_email", now)
    if spent is None:
        raise InvalidEmailToken()
    await accounts.profiles.invalidate(spent["user_id"])
    user = await accounts.users.mark_verified(spent["user_id"], spent["credential_version"], now)
    if user is None:
        raise InvalidEmailToken()
    return public_user(user)

