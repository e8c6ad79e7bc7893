"""Everything a process holds open: clients, repositories, the domain, built once.

``open_stack(settings)`` is the one place that turns settings into live objects and closes
them again; the API, the worker and the admin commands all start from it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import httpx
import procrastinate

from authnode.accounts.context import Accounts
from authnode.accounts.emails import Mailer
from authnode.accounts.passwords import PasswordHasher, PasswordPolicy, load_common_passwords
from authnode.accounts.profile import load_public_profile
from authnode.clients.mongo import MongoHandles, create_mongo
from authnode.clients.redis import RedisClient, connect_redis
from authnode.jobs.app import create_job_app
from authnode.jobs.outbox import JobQueueOutbox
from authnode.jobs.worker_context import WorkerContext
from authnode.mail import sender_from_url
from authnode.mfa.challenges import MfaChallenges
from authnode.mfa.context import MfaContext
from authnode.observability.metrics import MongoPoolListener, NullMetrics, ProcessMetrics
from authnode.oidc.flow import Oidc
from authnode.operators.audit import AuditLog
from authnode.probes import Probe, dependency_probes
from authnode.repositories.admin_keys import AdminKeyRepository
from authnode.repositories.audit import AuditRepository
from authnode.repositories.email_tokens import EmailTokenRepository
from authnode.repositories.identities import IdentityRepository
from authnode.repositories.registrations import RegistrationRepository
from authnode.repositories.second_factors import SecondFactorRepository
from authnode.repositories.sent_emails import SentEmailRepository
from authnode.repositories.sessions import SessionRepository
from authnode.repositories.signing_keys import SigningKeyRepository
from authnode.repositories.spend_guards import SpendGuards
from authnode.repositories.users import UserRepository
from authnode.repositories.webhooks import WebhookDeliveryRepository, WebhookEndpointRepository
from authnode.settings import Settings, require_secret_key
from authnode.shared.cache import ProfileCache, tombstone_ttl_s
from authnode.shared.online import OnlineUsers, running
from authnode.shared.ratelimit import RedisRateLimiter
from authnode.shared.revocations import Revocations
from authnode.tokens.access import AccessTokens
from authnode.tokens.keyring import KeyRing
from authnode.tokens.refresh import refresh_key_from_secret
from authnode.tokens.sealing import WEBHOOK_SECRETS, SealedBox
from authnode.webhooks.delivery import JobQueueDeliveries, WebhookDeliverer, Webhooks
from authnode.webhooks.from_audit import emitter as webhook_emitter

OIDC_HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Stack:
    settings: Settings
    redis: RedisClient
    mongo: MongoHandles
    jobs: procrastinate.App
    keyring: KeyRing
    accounts: Accounts
    worker: WorkerContext
    online: OnlineUsers
    webhooks: Webhooks | None = None  # endpoints and emit(), for the API side
    oidc: Oidc | None = None  # provider sign-in, for the API side

    def probes(self) -> dict[str, Probe]:
        async def postgresql() -> object:
            return await self.jobs.connector.execute_query_one_async("SELECT 1 AS ok")

        return dependency_probes(self.mongo.primary, self.redis, postgresql)


async def ensure_indexes(mongo: MongoHandles) -> None:
    users = UserRepository(mongo)
    await users.ensure_indexes()
    await users.load_id_key()
    await SessionRepository(mongo).ensure_indexes()
    await SpendGuards(mongo).ensure_indexes()
    await EmailTokenRepository(mongo).ensure_indexes()
    await RegistrationRepository(mongo).ensure_indexes()
    await SentEmailRepository(mongo).ensure_indexes()
    await SigningKeyRepository(mongo.primary).ensure_indexes()
    await AdminKeyRepository(mongo).ensure_indexes()
    await AuditRepository(mongo).ensure_indexes()
    await WebhookEndpointRepository(mongo).ensure_indexes()
    await WebhookDeliveryRepository(mongo).ensure_indexes()
    await IdentityRepository(mongo).ensure_indexes()


@asynccontextmanager
async def open_stack(settings: Settings, *, load_keys: bool = True,
                     metrics: ProcessMetrics | None = None) -> AsyncIterator[Stack]:
    """``metrics``: the process's metrics; its methods become the components' hooks
    (admin commands pass none: :class:`NullMetrics` counts nothing)."""
    metrics = metrics or NullMetrics()
    secret = require_secret_key(settings)
    redis = await connect_redis(settings)
    mongo_pool = metrics.mongo_pool_listener()
    mongo = create_mongo(settings, event_listeners=[mongo_pool])
    jobs = create_job_app(settings)
    sender = sender_from_url(settings.smtp_url,
                             allow_insecure_auth=settings.smtp_allow_insecure_auth)
    webhook_box = SealedBox([secret, settings.secret_key_previous], purpose=WEBHOOK_SECRETS)
    webhook_endpoints = WebhookEndpointRepository(mongo)
    webhook_deliveries = WebhookDeliveryRepository(mongo)
    deliverer = WebhookDeliverer(endpoints=webhook_endpoints, deliveries=webhook_deliveries,
                                 box=webhook_box,
                                 allow_private=settings.webhook_allow_private)
    # Providers' discovery documents, keys and token endpoints (authnode/oidc).
    oidc_http = httpx.AsyncClient(timeout=httpx.Timeout(OIDC_HTTP_TIMEOUT_S),
                                  follow_redirects=False)
    try:
        await jobs.open_async()
        users = UserRepository(mongo)
        await users.load_id_key()
        sessions = SessionRepository(mongo)
        email_tokens = EmailTokenRepository(mongo)
        registrations = RegistrationRepository(mongo)
        limiter = RedisRateLimiter(redis,
                                   on_refused=metrics.rate_limit_refused)
        keyring = KeyRing(SigningKeyRepository(mongo.primary), secret,
                          rotation_s=settings.signing_key_rotation_s,
                          access_token_ttl_s=settings.access_token_ttl_s,
                          previous_secret=settings.secret_key_previous)
        if load_keys:
            await keyring.load()
        hasher = PasswordHasher(memory_kib=settings.argon2_memory_kib,
                                time_cost=settings.argon2_time_cost,
                                parallelism=settings.argon2_parallelism,
                                threads=settings.hash_threads,
                                on_hash_seconds=metrics.observe_hash_seconds)
        await hasher.prepare()  # the dummy hash, so the first unknown-email login is not slower
        accounts: Accounts
        profiles = ProfileCache(redis, lambda user_id: load_public_profile(accounts, user_id),
                                ttl_s=settings.profile_cache_ttl_s,
                                tombstone_ttl_s=tombstone_ttl_s(settings.max_replica_lag_s),
                                on_hit=metrics.profile_cache_hit,
                                on_miss=metrics.profile_cache_miss)
        accounts = Accounts(
            settings=settings, users=users, sessions=sessions, email_tokens=email_tokens,
            registrations=registrations,
            hasher=hasher, policy=PasswordPolicy(load_common_passwords()),
            access_tokens=AccessTokens(keyring, issuer=settings.public_origin,
                                       ttl_s=settings.access_token_ttl_s),
            refresh_key=refresh_key_from_secret(secret),
            revocations=Revocations(redis, access_token_ttl_s=settings.access_token_ttl_s,
                                    refresh_token_ttl_s=settings.refresh_token_ttl_s),
            limiter=limiter, profiles=profiles, clock=time.time,
            outbox=JobQueueOutbox(jobs, on_deferred=metrics.job_deferred),
            mfa=MfaContext.build(factors=SecondFactorRepository(mongo),
                                 guards=SpendGuards(mongo), challenges=MfaChallenges(redis),
                                 secrets_newest_first=[secret, settings.secret_key_previous],
                                 public_url=settings.public_url),
            audit=AuditLog(AuditRepository(mongo), on_failure=metrics.audit_event_lost),
            admin_keys=AdminKeyRepository(mongo), identities=IdentityRepository(mongo),
        )
        mailer = Mailer(settings=settings, users=users, email_tokens=email_tokens,
                        registrations=registrations,
                        sent_emails=SentEmailRepository(mongo), sender=sender, limiter=limiter)
        worker = WorkerContext(settings=settings, mailer=mailer, sessions=sessions,
                               keyring=keyring, audit=accounts.audit.store,
                               observe_job=metrics.observe_job, webhooks=deliverer)
        webhooks = Webhooks(endpoints=webhook_endpoints, deliveries=webhook_deliveries,
                            queue=JobQueueDeliveries(jobs), box=webhook_box,
                            allow_private=settings.webhook_allow_private)
        accounts.audit.on_written = webhook_emitter(webhooks, metrics.audit_event_lost)
        _watch_pools(metrics, settings, hasher, jobs, mongo_pool)
        online = OnlineUsers(redis, window_s=settings.online_window_s)
        async with running(online), anyio.create_task_group() as background:
            # The flushers send online marks to Redis and audit events to MongoDB.
            background.start_soon(accounts.audit.run)
            try:
                yield Stack(settings=settings, redis=redis, mongo=mongo, jobs=jobs,
                            keyring=keyring, accounts=accounts, worker=worker, online=online,
                            webhooks=webhooks, oidc=Oidc(accounts, redis, oidc_http))
            finally:
                background.cancel_scope.cancel()  # audit.run writes what is left first
    finally:
        await oidc_http.aclose()
        await deliverer.aclose()
        await sender.aclose()
        await jobs.close_async()
        await mongo.close()
        await redis.aclose()


def _watch_pools(metrics: ProcessMetrics, settings: Settings, hasher: PasswordHasher,
                 jobs: procrastinate.App, mongo_pool: MongoPoolListener) -> None:
    """Pool sizes, and what is in use where a public API tells (Redis has none)."""

    connector = jobs.connector

    def postgres_in_use() -> float:
        if not isinstance(connector, procrastinate.PsycopgConnector):
            return float("nan")
        stats = connector.pool.get_stats()
        return float(stats["pool_size"] - stats["pool_available"])

    metrics.watch_pool("mongodb", size=settings.db_pool_size,
                       in_use=mongo_pool.in_use)
    metrics.watch_pool("redis", size=settings.redis_max_connections)
    metrics.watch_pool("postgresql", size=settings.postgres_pool_size, in_use=postgres_in_use)
    metrics.watch_pool("hash_threads", size=settings.hash_threads,
                       in_use=lambda: float(hasher.limiter.borrowed_tokens))
