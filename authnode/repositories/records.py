"""What the stores take and return: one frozen record per stored thing.

The domain reads and builds these; only the MongoDB repositories turn them into documents
and back (``from_document`` / ``to_document`` live there), so the stored shape is decided
in one place. Fields a document may lack (accounts and sessions written by older
versions) have the default the domain always assumed for them.
"""

from __future__ import annotations

import hashlib
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

    @property
    def has_password(self) -> bool:
        """False for an account made by signing in with a provider (``password_hash``
        is empty) until it sets one through a reset link."""
        return bool(self.password_hash)


NO_PASSWORD = ""  # the password_hash of an account without a password


def identity_id(provider: str, subject: str) -> str:
    """The ``_id`` of a linked identity: fixed length whatever the provider's ``sub``."""
    digest = hashlib.sha256(f"{provider}\x00{subject}".encode()).hexdigest()
    return digest[:32]


@dataclass(frozen=True)
class Identity:
    """A provider's account (``provider``, its ``sub``) linked to one of ours. ``email``
    is what the provider said when it was linked (shown to the user, never matched)."""

    provider: str
    subject: str
    user_id: str
    email: str | None
    created_at: datetime

    @property
    def id(self) -> str:
        return identity_id(self.provider, self.subject)


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
    # How the user last proved who they are in this session (RFC 8176 values, e.g.
    # ("pwd", "otp")) and when; sessions from before second factors: ("pwd",), created_at.
    amr: tuple[str, ...] = ("pwd",)
    auth_time: datetime | None = None

    @property
    def authenticated_at(self) -> datetime:
        return self.auth_time or self.created_at

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


@dataclass(frozen=True)
class Passkey:
    """A WebAuthn credential: ``id`` is its credential id (base64url)."""

    id: str
    public_key: bytes
    sign_count: int
    name: str
    created_at: datetime
    last_used_at: datetime | None = None


@dataclass(frozen=True)
class SecondFactors:
    """A user's second factors, kept in one document per user. ``version`` grows with each
    change (the store's compare-and-set). ``totp_sealed``: the enabled TOTP seed, sealed
    under SECRET_KEY; ``totp_pending_sealed``: one being enrolled, not yet confirmed.
    ``recovery``: the keyed hashes of the unused recovery codes."""

    user_id: str
    version: int = 0
    totp_sealed: bytes | None = None
    totp_enabled_at: datetime | None = None
    totp_pending_sealed: bytes | None = None
    totp_pending_at: datetime | None = None
    recovery: tuple[str, ...] = ()
    passkeys: tuple[Passkey, ...] = ()

    @property
    def methods(self) -> list[str]:
        """What can finish a login, in the API's words (empty: no second factor)."""
        if not self.enrolled:
            return []
        found = ["totp"] if self.totp_sealed is not None else []
        if self.recovery:
            found.append("recovery_code")
        if self.passkeys:
            found.append("webauthn")
        return found

    @property
    def enrolled(self) -> bool:
        return self.totp_sealed is not None or bool(self.passkeys)

    def passkey(self, credential_id: str) -> Passkey | None:
        return next((p for p in self.passkeys if p.id == credential_id), None)


@dataclass(frozen=True)
class AdminKey:
    """An operator's API key. ``id`` is public (shown in lists, used to revoke); the store
    keys it by ``digest``, the SHA-256 of the whole secret key, which is shown once."""

    id: str
    digest: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class AuditEvent:
    """One security event. ``id`` sorts by time (milliseconds, then randomness), so it is
    also the cursor of a listing. Never a secret: no password, token or code."""

    id: str
    at: datetime
    event: str
    user_id: str | None
    actor: str  # "user", "admin:<key name>", "operator" (the CLI), "system"
    outcome: str
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

def new_webhook_endpoint_id() -> str:
    return "whe_" + secrets.token_hex(12)


@dataclass(frozen=True)
class WebhookEndpoint:
    """A URL that receives events. ``events``: the event types it asked for.
    ``sealed_secret``: its ``whsec_`` signing secret sealed under SECRET_KEY (see
    webhooks/delivery); dropped (None) when the endpoint is deleted. A deleted endpoint is
    kept, so its deliveries still name it."""

    id: str
    url: str
    events: tuple[str, ...]
    description: str
    sealed_secret: bytes | None
    created_at: datetime
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of a webhook: the receiver's status code, or the error that stopped it."""

    at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class WebhookDelivery:
    """One event for one endpoint and its attempts, oldest first; ``id`` is
    ``{endpoint_id}:{webhook_id}``. ``status``: ``pending`` (will be retried),
    ``succeeded`` or ``failed`` (no attempt left, or the endpoint was deleted).
    ``version`` grows with each change (the store's compare-and-set)."""

    id: str
    endpoint_id: str
    webhook_id: str
    event_type: str
    status: str
    created_at: datetime
    updated_at: datetime
    version: int = 0
    attempts: tuple[DeliveryAttempt, ...] = ()
