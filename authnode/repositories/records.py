"""What the stores take and return: one frozen record per stored thing.

The domain reads and builds these; only the MongoDB repositories turn them into documents
and back (``from_document`` / ``to_document`` live there), so the stored shape is decided
in one place. Fields a document may lack (accounts and sessions written by older
versions) have the default the domain always assumed for them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

SPENT_PREFIX_CHARS = 16


def new_user_id() -> str:
    """A random, permanent user id: 128 bits as 32 hex digits (the shape of the old ids)."""
    return secrets.token_hex(16)


def new_registration_id() -> str:
    return secrets.token_urlsafe(18)


def spent_prefix(token_hash: str) -> str:
    """What a session remembers of a refresh token it rotated away: 64 bits of its hash,
    enough to recognise a replay, useless to forge a token."""
    return token_hash[:SPENT_PREFIX_CHARS]


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str | None
    password_hash: str
    email_verified: bool
    disabled: bool
    credential_version: int
    created_at: datetime | None
    updated_at: datetime | None
    password_changed_at: datetime | None = None


@dataclass(frozen=True)
class Session:
    """One login. ``spent``: prefixes of the refresh tokens it rotated away, oldest first;
    None when the read left them out (session listings, ``by_id`` without ``with_spent``).
    ``credentials_at``: when this session last proved the password (it changed it)."""

    id: str
    user_id: str
    refresh_hash: str
    previous_hash: str | None
    rotation_nonce: str | None
    rotated_at: datetime | None
    spent: tuple[str, ...] | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime
    user_agent: str
    ip: str
    revoked_at: datetime | None
    credentials_at: datetime | None = None

    def spent_earlier(self, token_hash: str) -> bool:
        """Whether a token with this hash was rotated away from this session (as far as
        the remembered, trimmed list tells)."""
        return spent_prefix(token_hash) in (self.spent or ())


@dataclass(frozen=True)
class EmailToken:
    """A link's token, by the hash of its secret. A verification link names the
    registration it confirms; a link for an account (reset, or a verification sent
    before registrations were kept apart) names the user and the credential version it
    was issued at."""

    id: str
    kind: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    registration_id: str | None = None
    user_id: str | None = None
    credential_version: int | None = None


@dataclass(frozen=True)
class Registration:
    """A sign-up waiting for its address to be confirmed (see repositories/registrations)."""

    id: str
    email: str
    name: str | None
    password_hash: str
    created_at: datetime
    expires_at: datetime
