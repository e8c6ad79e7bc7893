"""Admin API keys: ``ak_<id>_<secret>``, shown once, stored as the SHA-256 of the whole key.

A key has a name (recorded as the actor of what it does) and scopes. Every admin request
reads the key by its digest from the primary, so a revoked key is refused at once on every
instance. A user's access token is never an admin credential, nor a key a user token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from authnode.errors import AuthnodeError, InvalidRequest, InvalidToken
from authnode.repositories.protocols import AdminKeyStore
from authnode.repositories.records import AdminKey
from authnode.settings import Settings
from authnode.shared.ratelimit import RateLimiter

PREFIX = "ak_"
SCOPES = ("users:read", "users:write", "sessions:write", "audit:read", "webhooks:write")
MAX_NAME_CHARS = 100
_KEY_SHAPE = re.compile(r"ak_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


class InsufficientScope(AuthnodeError):
    status = 403
    code = "insufficient_scope"
    default_message = "This admin key does not have the scope this operation needs."


@dataclass(frozen=True)
class AdminPrincipal:
    """Who an admin request speaks for: a key, by its id and name."""

    key_id: str
    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"


def digest(secret_key: str) -> str:
    return hashlib.sha256(secret_key.encode("utf-8")).hexdigest()


def is_admin_key(bearer: str) -> bool:
    return bearer.startswith(PREFIX)


def check_scopes(scopes: list[str]) -> tuple[str, ...]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise InvalidRequest(f"scopes: expected one or more of {', '.join(SCOPES)}"
                             + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return tuple(s for s in SCOPES if s in scopes)


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME_CHARS or not cleaned.isprintable():
        raise InvalidRequest(f"name: expected 1 to {MAX_NAME_CHARS} printable characters")
    return cleaned


async def create(store: AdminKeyStore, *, name: str, scopes: list[str],
                 now: datetime) -> tuple[AdminKey, str]:
    """A new key and its secret (to show once; only its digest is kept)."""
    key_id = secrets.token_hex(6)
    secret_key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    key = AdminKey(id=key_id, digest=digest(secret_key), name=check_name(name),
                   scopes=check_scopes(scopes), created_at=now)
    await store.insert(key)
    return key, secret_key


async def authenticate(store: AdminKeyStore, limiter: RateLimiter, settings: Settings,
                       bearer: str, *, needs: frozenset[str]) -> AdminPrincipal:
    """The key behind ``bearer`` if it is live and holds ``needs``; counted against the
    key's rate limit (``ADMIN_KEY_LIMIT``)."""
    if not _KEY_SHAPE.fullmatch(bearer):
        raise InvalidToken()
    key = await store.by_digest(digest(bearer))
    if key is None or key.revoked_at is not None:
        raise InvalidToken()
    await limiter.check("admin_key", key.id, settings.admin_key_limit)
    if not needs <= set(key.scopes):
        raise InsufficientScope()
    return AdminPrincipal(key_id=key.id, name=key.name, scopes=frozenset(key.scopes))


def describe(key: AdminKey) -> dict[str, object]:
    return {"id": key.id, "name": key.name, "scopes": list(key.scopes),
            "created_at": key.created_at.isoformat().replace("+00:00", "Z"),
            "revoked_at": key.revoked_at.isoformat().replace("+00:00", "Z")
            if key.revoked_at else None}
