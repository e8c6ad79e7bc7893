"""Prometheus metrics of one authnode process.

One :class:`Metrics` per process: the runtime builds it, :mod:`authnode.stack` turns its
methods into the hooks of the rate limiter, the profile cache, the password hasher, the
job outbox and the worker, and the API counts each request in ``after_request``. Nothing
here is module-global: each :class:`Metrics` owns its ``CollectorRegistry``.

**Several processes on one port** (``serve --workers N``, or the systemd template's
``authnode-api@N`` instances): the supervisor (or the unit) sets
``PROMETHEUS_MULTIPROC_DIR``. prometheus-client then keeps every value in a file per
process in that folder, and :meth:`Metrics.exposition` answers with the combination of
every process's file (``MultiProcessCollector``), whichever process the scrape reaches.
Counters and histograms are summed; each gauge says how it combines (``multiprocess_mode``):
pool gauges are summed over the live processes (the host's total), queue gauges keep the
most recent sample. A process marks itself dead on a clean exit (:meth:`Metrics.close`).

**Label values are never user input**: routes are URL-rule templates
(``/v1/sessions/<session_id>``; ``unmatched`` when nothing matched), methods outside a
fixed set become ``OTHER``, status codes are numbers, and every other label comes from a
fixed vocabulary in the code (limit names, task names, queue names, outcomes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from pymongo import monitoring

from authnode.errors import (
    AccountDisabled,
    AccountLocked,
    EmailNotVerified,
    InvalidCredentials,
    MfaRequired,
    RateLimited,
)

__all__ = [
    "HTTP_METHODS",
    "JOB_QUEUE_SQL",
    "LOGIN_OUTCOMES",
    "MULTIPROC_ENV",
    "SAMPLE_INTERVAL_S",
    "Metrics",
    "MongoPoolListener",
    "login_outcome",
]

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_INTERVAL_S = 5.0
QUEUE_SAMPLE_TIMEOUT_S = 3.0

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LOGIN_OUTCOMES = ("success", "bad_credentials", "locked", "unverified", "disabled",
                  "rate_limited", "mfa_required", "error")
CACHE_RESULTS = ("hit", "miss")

HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Argon2id at the OWASP minimum takes tens of milliseconds; tuned-up costs take longer.
HASH_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
JOB_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# Jobs waiting per queue, and how long the oldest *due* one has waited: since its
# scheduled time if it has one (retries are scheduled), otherwise since the last event
# that put it in ``todo`` (procrastinate's jobs table has no creation time of its own).
JOB_QUEUE_SQL = """
SELECT j.queue_name AS queue,
       count(*) AS depth,
       extract(epoch FROM now() - min(coalesce(j.scheduled_at, e.at))
               FILTER (WHERE j.scheduled_at IS NULL OR j.scheduled_at <= now())
       )::float8 AS oldest_s
FROM procrastinate_jobs j
LEFT JOIN LATERAL (
    SELECT max(ev.at) AS at FROM procrastinate_events ev
    WHERE ev.job_id = j.id AND ev.type IN ('deferred', 'deferred_for_retry', 'retried')
) e ON true
WHERE j.status = 'todo'
GROUP BY j.queue_name
"""


class QueryConnector(Protocol):
    """The part of procrastinate's connector the queue sampler needs."""

    async def execute_query_all_async(self, query: str, **arguments: Any) -> list[dict[str, Any]]:
        ...


def login_outcome(error: BaseException) -> str:
    """The ``outcome`` label of a login that raised ``error``."""
    if isinstance(error, AccountLocked):
        return "locked"
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, InvalidCredentials):
        return "bad_credentials"
    if isinstance(error, EmailNotVerified):
        return "unverified"
    if isinstance(error, AccountDisabled):
        return "disabled"
    if isinstance(error, MfaRequired):
        return "mfa_required"
    return "error"


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "OTHER"


@dataclass(frozen=True)
class _Pool:
    size: int
    in_use: Callable[[], float] | None


class Metrics:
    """Every metric of one process; build once (per process) and pass down.

    ``environ`` (default ``os.environ``) decides the mode: with ``PROMETHEUS_MULTIPROC_DIR``
    set, values live in that folder and exposition combines every process's values.
    prometheus-client reads the same variable when it is first imported, so it must be
    set before the process starts (the supervisor does so) rather than changed later.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.multiprocess_dir: str | None = env.get(MULTIPROC_ENV) or None
        # Where the metric objects live. In multiprocess mode they are never exposed from
        # here (their values are in the files), only through the aggregating collector.
        self.registry = CollectorRegistry(auto_describe=True)
        if self.multiprocess_dir is None:
            self._exposed = self.registry
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        else:
            self._exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self._exposed, path=self.multiprocess_dir)
        registry = self.registry

        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.http_requests = Counter(
            "authnode_http_requests", "HTTP requests answered, by route template.",
            ["route", "method", "status"], registry=registry)
        self.http_duration = Histogram(
            "authnode_http_request_duration_seconds",
            "Time from the start of a request to its response, by route template.",
            ["route", "method", "status"], buckets=HTTP_BUCKETS_S, registry=registry)
        self.logins = Counter(
            "authnode_logins", "Login attempts by outcome.", ["outcome"], registry=registry)
        self.rate_limit_refusals = Counter(
            "authnode_rate_limit_refusals", "Events refused by a rate limit, by limit name.",
            ["limit"], registry=registry)
        self.profile_cache = Counter(
            "authnode_profile_cache_lookups", "Profile cache lookups: hit or miss.",
            ["result"], registry=registry)
        self.hash_seconds = Histogram(
            "authnode_password_hash_seconds",
            "Wall time of one Argon2id hash or verification (excludes waiting for a thread).",
            buckets=HASH_BUCKETS_S, registry=registry)
        self.audit_lost = Counter(
            "authnode_audit_events_lost",
            "Audit events that could not be written (store down, or the queue full).",
            registry=registry)
        self.jobs_deferred = Counter(
            "authnode_jobs_deferred", "Jobs put on the queue, by task.", ["task"],
            registry=registry)
        self.jobs_processed = Counter(
            "authnode_jobs_processed",
            "Job runs by task and outcome: succeeded, failed (no attempt left) or retried.",
            ["task", "outcome"], registry=registry)
        self.job_duration = Histogram(
            "authnode_job_duration_seconds", "Run time of one job attempt, by task.",
            ["task"], buckets=JOB_BUCKETS_S, registry=registry)
        self.queue_depth = Gauge(
            "authnode_job_queue_depth", "Jobs waiting (status todo) per queue.", ["queue"],
            multiprocess_mode="livemostrecent", registry=registry)
        self.queue_oldest_age = Gauge(
            "authnode_job_queue_oldest_age_seconds",
            "How long the oldest due job of each queue has waited (0 when none is due).",
            ["queue"], multiprocess_mode="livemostrecent", registry=registry)
        self.pool_size = Gauge(
            "authnode_pool_size",
            "Configured size of each pool (redis: per node in cluster mode); summed over "
            "the processes sharing a port.",
            ["pool"], multiprocess_mode="livesum", registry=registry)
        self.pool_in_use = Gauge(
            "authnode_pool_in_use",
            "Connections (or hash threads) of each pool in use now.",
            ["pool"], multiprocess_mode="livesum", registry=registry)

        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome=outcome)
        for result in CACHE_RESULTS:
            self.profile_cache.labels(result=result)
        self._pools: dict[str, _Pool] = {}
        self._queue_source: tuple[QueryConnector, tuple[str, ...]] | None = None
        self._queue_failing = False

    # ------------------------------------------------------------------ hooks

    def observe_request(self, *, route: str, method: str, status: int, seconds: float) -> None:
        # One request: the labelled children are looked up once per label set, not built
        # again (prometheus-client's labels() validates and locks on every call).
        key = (route, method_label(method), status)  # all three from fixed vocabularies
        children = self._request_children.get(key)
        if children is None:
            labels = {"route": route, "method": key[1], "status": str(status)}
            children = (self.http_requests.labels(**labels),
                        self.http_duration.labels(**labels))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    @contextmanager
    def login_attempt(self) -> Iterator[None]:
        """Count the outcome of the login run inside the block (errors are re-raised)."""
        try:
            yield
        except Exception as error:
            outcome = login_outcome(error)
            self.logins.labels(outcome=outcome).inc()
            if outcome == "locked":
                # A refused lockout reservation does not call the limiter's on_refused
                # hook (its caller reports it); the refusal is counted here.
                self.rate_limit_refused("login_account")
            raise
        self.logins.labels(outcome="success").inc()

    def rate_limit_refused(self, limit: str) -> None:
        self.rate_limit_refusals.labels(limit=limit).inc()

    def profile_cache_hit(self) -> None:
        self.profile_cache.labels(result="hit").inc()

    def profile_cache_miss(self) -> None:
        self.profile_cache.labels(result="miss").inc()

    def observe_hash_seconds(self, seconds: float) -> None:
        self.hash_seconds.observe(seconds)

    def audit_event_lost(self) -> None:
        self.audit_lost.inc()

    def job_deferred(self, task: str) -> None:
        self.jobs_deferred.labels(task=task).inc()

    def observe_job(self, task: str, outcome: str, seconds: float) -> None:
        """A task's own outcome ("sent", "skipped:…", "failed", "retried") becomes one
        of succeeded / failed / retried."""
        status = outcome if outcome in ("failed", "retried") else "succeeded"
        self.jobs_processed.labels(task=task, outcome=status).inc()
        self.job_duration.labels(task=task).observe(seconds)

    # ------------------------------------------------------------------ sampled gauges

    def watch_pool(self, pool: str, *, size: int,
                   in_use: Callable[[], float] | None = None) -> None:
        """Report ``pool``'s configured size, and ``in_use()`` at every sample."""
        self._pools[pool] = _Pool(size=size, in_use=in_use)
        self.pool_size.labels(pool=pool).set(size)

    def watch_job_queue(self, connector: QueryConnector, queues: Sequence[str]) -> None:
        """Sample the depth and oldest-job age of ``queues`` from PostgreSQL."""
        self._queue_source = (connector, tuple(queues))

    def sample_pools(self) -> None:
        for name, pool in self._pools.items():
            if pool.in_use is None:
                continue
            try:
                value = pool.in_use()
            except Exception:  # a closed pool while stopping: skip this sample
                log.debug("pool sample failed", extra={"dependency": name}, exc_info=True)
                continue
            self.pool_in_use.labels(pool=name).set(value)

    async def sample_job_queue(self) -> bool:
        """One query; False (and the gauges left as they were) if PostgreSQL fails."""
        if self._queue_source is None:
            return True
        connector, queues = self._queue_source
        try:
            with anyio.fail_after(QUEUE_SAMPLE_TIMEOUT_S):
                rows = await connector.execute_query_all_async(JOB_QUEUE_SQL)
        except Exception:
            if not self._queue_failing:
                log.warning("job queue sample failed; will retry",
                            extra={"dependency": "postgresql"})
            self._queue_failing = True
            return False
        self._queue_failing = False
        found = {row["queue"]: row for row in rows}
        for queue in queues:
            row = found.get(queue)
            self.queue_depth.labels(queue=queue).set(row["depth"] if row else 0)
            age = row["oldest_s"] if row and row["oldest_s"] is not None else 0.0
            self.queue_oldest_age.labels(queue=queue).set(max(0.0, float(age)))
        return True

    async def sample(self) -> None:
        self.sample_pools()
        await self.sample_job_queue()

    async def sample_forever(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        while True:
            await self.sample()
            await anyio.sleep(interval_s)

    # ------------------------------------------------------------------ exposition

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and Content-Type answering a scrape with this ``Accept`` header
        (Prometheus text format, or OpenMetrics when asked for). In multiprocess mode this
        reads every process's file: call it off the event loop."""
        self.sample_pools()
        encoder, content_type = choose_encoder(accept)
        return encoder(self._exposed), content_type

    def mongo_pool_listener(self) -> MongoPoolListener:
        """A pymongo listener counting checked-out connections, reported as pool
        ``mongodb`` in use (register it with ``watch_pool``)."""
        return MongoPoolListener()

    def close(self) -> None:
        """A clean exit in multiprocess mode: drop this process from the live gauges."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                os.getpid(), self.multiprocess_dir)


class ProcessMetrics(Protocol):
    """What the components of a stack report to; :class:`Metrics` or :class:`NullMetrics`."""

    def rate_limit_refused(self, limit: str) -> None: ...
    def profile_cache_hit(self) -> None: ...
    def profile_cache_miss(self) -> None: ...
    def observe_hash_seconds(self, seconds: float) -> None: ...
    def job_deferred(self, task: str) -> None: ...
    def audit_event_lost(self) -> None: ...
    def observe_job(self, task: str, outcome: str, seconds: float) -> None: ...
    def watch_pool(self, pool: str, *, size: int,
                   in_use: Callable[[], float] | None = None) -> None: ...
    def mongo_pool_listener(self) -> MongoPoolListener: ...


class NullMetrics:
    """Counts nothing (Warehouse's ``NullMetrics``): the admin commands serve no /metrics,
    and with this object no component asks whether metrics exist."""

    def rate_limit_refused(self, limit: str) -> None:
        return None

    def profile_cache_hit(self) -> None:
        return None

    def profile_cache_miss(self) -> None:
        return None

    def observe_hash_seconds(self, seconds: float) -> None:
        return None

    def job_deferred(self, task: str) -> None:
        return None

    def audit_event_lost(self) -> None:
        return None

    def observe_job(self, task: str, outcome: str, seconds: float) -> None:
        return None

    def watch_pool(self, pool: str, *, size: int,
                   in_use: Callable[[], float] | None = None) -> None:
        return None

    def mongo_pool_listener(self) -> MongoPoolListener:
        return MongoPoolListener()


class MongoPoolListener(monitoring.ConnectionPoolListener):
    """Connections checked out of pymongo's pools right now (over every server)."""

    def __init__(self) -> None:
        self.checked_out = 0

    def in_use(self) -> float:
        return float(max(0, self.checked_out))

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        self.checked_out += 1

    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None:
        self.checked_out -= 1

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None:
        return None

    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None:
        return None

    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None:
        return None

    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None:
        return None

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        return None

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        return None

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        return None

    def connection_check_out_started(
            self, event: monitoring.ConnectionCheckOutStartedEvent) -> None:
        return None

    def connection_check_out_failed(
            self, event: monitoring.ConnectionCheckOutFailedEvent) -> None:
        return None
