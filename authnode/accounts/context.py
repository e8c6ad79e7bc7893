"""Everything the account flows need, built once per process and passed in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from authnode.accounts.models import utc
from authnode.accounts.outbox import EmailOutbox
from authnode.accounts.passwords import PasswordHasher, PasswordPolicy
from authnode.mfa.context import MfaContext
from authnode.operators.audit import AuditLog
from authnode.repositories.protocols import (
    AdminKeyStore,
    EmailTokenStore,
    IdentityStore,
    RegistrationStore,
    SessionStore,
    UserStore,
)
from authnode.settings import Settings
from authnode.shared.cache import ProfileCache
from authnode.shared.ratelimit import RateLimiter
from authnode.shared.revocations import Revocations
from authnode.tokens.access import AccessTokens


@dataclass(frozen=True)
class Accounts:
    settings: Settings
    users: UserStore
    sessions: SessionStore
    email_tokens: EmailTokenStore
    registrations: RegistrationStore
    hasher: PasswordHasher
    policy: PasswordPolicy
    access_tokens: AccessTokens
    refresh_key: bytes
    revocations: Revocations
    limiter: RateLimiter
    outbox: EmailOutbox
    profiles: ProfileCache
    mfa: MfaContext
    audit: AuditLog
    admin_keys: AdminKeyStore
    identities: IdentityStore
    clock: Callable[[], float] = field(default=time.time)

    def now(self) -> datetime:
        return utc(self.clock())
