"""One Redis client for the whole process, single node or cluster by ``REDIS_MODE``.

Nothing else in authnode may depend on which mode is in use: there are no database
numbers (a cluster has only database 0), and keys that one command touches together share
a ``{hash tag}`` (see :mod:`authnode.shared.redis_keys`).
"""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from authnode.errors import Unavailable
from authnode.settings import Settings

RedisClient: TypeAlias = "Redis | RedisCluster"

# Short socket timeouts: a dead Redis must turn into a clear 503 well inside the request
# timeout, never a hang.
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0

# Everything that means "Redis cannot answer now" (down, failing over, timing out).
REDIS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, ClusterDownError, RedisClusterException,
    RedisError, OSError, TimeoutError,
)


def startup_nodes(redis_url: str) -> list[tuple[str, int]]:
    nodes = []
    for node in redis_url.split(","):
        parts = urlsplit(node if "://" in node else f"redis://{node}")
        nodes.append((parts.hostname or "127.0.0.1", parts.port or 6379))
    return nodes


async def connect_redis(settings: Settings) -> RedisClient:
    """The client, ready for concurrent use.

    A fresh ``RedisCluster`` initialises lazily, and a burst of concurrent first commands
    races in that set-up (commands run twice, or fail with an AttributeError), so the
    cluster's slot map is loaded once here, before any request can use the client.
    """
    client = create_redis(settings)
    if isinstance(client, RedisCluster):
        try:
            await client.initialize()
        except REDIS_OUTAGE_ERRORS:
            pass  # not reachable yet: readiness reports it; commands initialise later
    return client


def create_redis(settings: Settings) -> RedisClient:
    if settings.redis_mode == "cluster":
        first = urlsplit(settings.redis_url.split(",")[0])
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in
                           startup_nodes(settings.redis_url)],
            username=first.username,
            password=first.password,
            ssl=first.scheme == "rediss",
            max_connections=settings.redis_max_connections,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            # During a failover the client must rediscover slots instead of failing
            # forever; a couple of quick retries covers a promotion of about a second.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
            require_full_coverage=False,
            decode_responses=False,
        )
    return Redis.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
        decode_responses=False,
    )


class _TranslateRedisErrors:
    """``async with redis_unavailable():`` turns a Redis outage into ``Unavailable``."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: object) -> bool:
        if exc is not None and isinstance(exc, REDIS_OUTAGE_ERRORS):
            raise Unavailable("redis") from exc
        return False


def redis_unavailable() -> _TranslateRedisErrors:
    return _TranslateRedisErrors()
