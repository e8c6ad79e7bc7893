"""Shapes shared by the account flows: the public view of a user, and input checks."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from authnode.errors import InvalidRequest
from authnode.repositories.records import User
from authnode.tokens.access import Assurance

MAX_EMAIL_CHARS = 254
MAX_NAME_CHARS = 100


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def public_user(user: User) -> dict[str, Any]:
    """USER in the API contract: never the hash, never internal counters."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "email_verified": user.email_verified,
        "created_at": iso(user.created_at),
    }


def normalize_email(raw: str) -> str:
    """The canonical form of an address, used as the account key; raises InvalidRequest.

    The whole address is lower-cased: no provider we know of treats ``Bob@x`` and
    ``bob@x`` as two mailboxes, and treating them as two accounts invites confusion.
    """
    if len(raw) > MAX_EMAIL_CHARS:
        raise InvalidRequest("email: expected an email address of at most 254 characters")
    try:
        valid = validate_email(raw, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidRequest("email: expected a valid email address") from None
    return valid.normalized.lower()


NO_ACCOUNT_ADDRESS = "@invalid"  # fails normalize_email, so no account can have it


def lookup_email(raw: str) -> str:
    """Like :func:`normalize_email` but never raises: a malformed address becomes one that
    matches no account (login and forgot answer the same for it as for any unknown one),
    and nothing of the raw input travels further (no NUL bytes into the job queue)."""
    try:
        return normalize_email(raw)
    except InvalidRequest:
        return NO_ACCOUNT_ADDRESS


def clean_name(raw: str | None) -> str | None:
    """A display name: trimmed, 1 to 100 characters, no control characters; None clears."""
    if raw is None:
        return None
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        return None
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest("name: expected at most 100 characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name):
        raise InvalidRequest("name: control characters are not allowed")
    return name


@dataclass(frozen=True)
class IssuedTokens:
    """``user``: the public profile (:func:`public_user`; from a refresh, the profile
    cache's entry, which may carry more keys)."""

    access_token: str
    expires_in: int
    refresh_token: str
    user: dict[str, Any]


@dataclass(frozen=True)
class Principal:
    """Who an access token speaks for.

    ``profile_entry``: the user's profile-cache entry when :func:`authenticate` read it
    together with the revocation marks (``GET /v1/users/me``), as a 1-tuple."""

    user_id: str
    session_id: str
    assurance: Assurance = Assurance()
    profile_entry: tuple[bytes | None] | None = field(default=None, repr=False,
                                                      compare=False)
