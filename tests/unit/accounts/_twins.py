"""Accounts and a Mailer on the in-memory stores, for fast tests of the account flows.

Redis-backed services are real objects on a Redis client that points at a closed port
unless a test passes a real one: the flows tested here must not need them (any use fails
the test with a connection error). The rate limiter is :class:`LockoutLimiter`, a
stand-in for the Protocol whose lockout counts the domain's reservations; the Redis
scripts' own rules are tested against Redis in tests/integration/test_lockout_reservations.py
and tests/security.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from authnode.accounts.context import Accounts
from authnode.accounts.emails import Mailer, deliver
from authnode.accounts.outbox import EmailKind
from authnode.accounts.passwords import PasswordHasher, PasswordPolicy
from authnode.accounts.profile import load_public_profile
from authnode.clients.redis import RedisClient
from authnode.mfa.challenges import MfaChallenges
from authnode.mfa.context import MfaContext
from authnode.operators.audit import AuditLog
from authnode.repositories.memory import (
    MemoryAdminKeyStore,
    MemoryAuditStore,
    MemoryEmailTokenStore,
    MemoryIdentityStore,
    MemoryRegistrationStore,
    MemorySecondFactorStore,
    MemorySentEmailStore,
    MemorySessionStore,
    MemorySpendGuards,
    MemoryUserStore,
)
from authnode.settings import RateLimit, Secret, Settings, load_settings
from authnode.shared.cache import ProfileCache
from authnode.shared.ratelimit import Decision
from authnode.shared.revocations import Revocations
from authnode.tokens.access import AccessTokens
from authnode.tokens.keyring import KeyRing
from authnode.tuning import HostResources
from tests.unit.mail.recording import RecordingSender
from tests.unit.tokens._fakes import FakeClock, MemoryKeyStore

SECRET_KEY = "kAcnsaTZqQsDEHhvXU86dqIl3s9dUKrBlVixMWudcNYsdyi3HxEa0r45fpQcXg7V"
SIGNING_SECRET = Secret("7pnL0c4LH7tyG3yKLJIlp5s-6eOGgc3_99vK9VkKb2c")
CLOSED_PORT = 9  # discard: nothing listens there


class LockoutLimiter:
    """A RateLimiter whose lockout counts reserved attempts per (account, client) and
    per account, as the Redis script does; a released attempt no longer counts. Every
    other limit allows everything."""

    def __init__(self) -> None:
        self.per_client: Counter[tuple[str, str]] = Counter()
        self.per_account: Counter[str] = Counter()

    async def hit(self, name: str, subject: str, limit: RateLimit) -> Decision:
        return Decision(allowed=True, count=1, remaining=limit.count - 1, retry_after_s=0)

    async def check(self, name: str, subject: str, limit: RateLimit) -> Decision:
        return await self.hit(name, subject, limit)

    async def reserve_attempt(self, account: str, client: str, *, per_client: RateLimit,
                              total: RateLimit) -> Decision:
        if self.per_client[account, client] >= per_client.count or \
                self.per_account[account] >= total.count:
            return Decision(allowed=False, count=self.per_client[account, client],
                            remaining=0, retry_after_s=per_client.window_s)
        self.per_client[account, client] += 1
        self.per_account[account] += 1
        return Decision(allowed=True, count=self.per_client[account, client],
                        remaining=per_client.count - self.per_client[account, client],
                        retry_after_s=0)

    async def release_attempt(self, account: str, client: str) -> None:
        self.per_client[account, client] -= 1
        self.per_account[account] -= 1

    async def clear_lockout(self, account: str) -> int:
        cleared = [key for key in self.per_client if key[0] == account]
        for key in cleared:
            del self.per_client[key]
        self.per_account.pop(account, None)
        return len(cleared)


@dataclass
class RecordingOutbox:
    """The job queue's place: keeps the requests, for :meth:`Twins.deliver_all`."""

    requests: list[tuple[EmailKind, str, str | None, str | None]] = field(default_factory=list)

    async def request(self, kind: EmailKind, *, email: str, user_id: str | None = None,
                      registration_id: str | None = None) -> None:
        self.requests.append((kind, email, user_id, registration_id))


@dataclass
class Twins:
    accounts: Accounts
    mailer: Mailer
    outbox: RecordingOutbox
    sender: RecordingSender
    limiter: LockoutLimiter
    clock: FakeClock
    jobs_run: int = 0

    async def deliver_all(self) -> list[str]:
        """Run the queued email jobs, as the worker does; their outcomes."""
        outcomes = []
        for kind, email, user_id, registration_id in self.outbox.requests:
            self.jobs_run += 1
            outcomes.append(await deliver(
                self.mailer, kind=kind, email=email, user_id=user_id,
                registration_id=registration_id, idempotency_key=f"job-{self.jobs_run}",
                first_attempt=True))
        self.outbox.requests.clear()
        return outcomes

    def link_tokens(self, address: str) -> list[str]:
        """The tokens of the links sent to ``address``, oldest first."""
        found = []
        for message in self.sender.to(address):
            body = message.get_body(("plain",))
            assert body is not None
            found += re.findall(r"token=([A-Za-z0-9_-]{16,})", body.get_content())
        return found


def settings(**environ: str) -> Settings:
    return load_settings({"SECRET_KEY": SECRET_KEY, **environ},
                         host=HostResources(cpus=2, memory_bytes=4 << 30))


async def twins(redis: RedisClient | None = None, **environ: str) -> Twins:
    """``redis``: for Revocations and the profile cache (default: a closed port)."""
    config = settings(**environ)
    clock = FakeClock()
    ring = KeyRing(MemoryKeyStore(), SIGNING_SECRET, rotation_s=86400, clock=clock)
    await ring.load()
    unreachable = redis or Redis(host="127.0.0.1", port=CLOSED_PORT)
    guards = MemorySpendGuards()
    users, email_tokens = MemoryUserStore(), MemoryEmailTokenStore(guards)
    registrations = MemoryRegistrationStore()
    limiter, outbox, sender = LockoutLimiter(), RecordingOutbox(), RecordingSender()

    async def profile(user_id: str) -> dict[str, Any] | None:
        return await load_public_profile(accounts, user_id)  # refreshes read it

    accounts = Accounts(
        settings=config, users=users, sessions=MemorySessionStore(guards),
        email_tokens=email_tokens, registrations=registrations,
        hasher=PasswordHasher(memory_kib=8, time_cost=1, parallelism=1, threads=1),
        policy=PasswordPolicy(frozenset({"password1"})),
        access_tokens=AccessTokens(ring, issuer=config.public_origin,
                                   ttl_s=config.access_token_ttl_s, clock=clock),
        refresh_key=hashlib.sha256(b"refresh key").digest(),
        revocations=Revocations(unreachable, access_token_ttl_s=config.access_token_ttl_s,
                                refresh_token_ttl_s=config.refresh_token_ttl_s),
        limiter=limiter, outbox=outbox,
        profiles=ProfileCache(unreachable, profile, ttl_s=60, tombstone_ttl_s=60),
        mfa=MfaContext.build(factors=MemorySecondFactorStore(), guards=guards,
                             challenges=MfaChallenges(unreachable),
                             secrets_newest_first=[config.secret_key],
                             public_url=config.public_url),
        audit=AuditLog(MemoryAuditStore(), clock=clock), admin_keys=MemoryAdminKeyStore(),
        identities=MemoryIdentityStore(),
        clock=clock)
    mailer = Mailer(settings=config, users=users, email_tokens=email_tokens,
                    registrations=registrations, sent_emails=MemorySentEmailStore(),
                    sender=sender, limiter=limiter, clock=clock)
    return Twins(accounts=accounts, mailer=mailer, outbox=outbox, sender=sender,
                 limiter=limiter, clock=clock)
