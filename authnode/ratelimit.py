"""Rate limits shared by every authnode instance through Redis.

Each limit (``name``) and subject (an account, an IP address, an email address) has one
counter key, :func:`authnode.redis_keys.rate_limit`, and every operation is one Lua script
on that one key: atomic, and the same on a single Redis and on a Redis Cluster.

Window semantics: a **fixed window that starts at the first event**. The first event of a
subject creates the counter with an expiry of ``limit.window_s``; later events only
increment it and never move the expiry. So with ``10/15m``:

* the 1st to 10th events inside the window are allowed, the 11th and later are refused;
* a refusal lasts until the window that began with the first event ends (``Retry-After``
  says how long), then the counter disappears and the subject starts afresh;
* refused events still count but do not extend the window, so hammering a locked account
  cannot keep it locked (for an attacker or for its owner) beyond the window.

This is cheaper and simpler than a sliding window (one key, one integer) at the price of
allowing up to ``2 * count`` events around a window boundary, which is fine for abuse
limits. For a lockout ("after N failed logins, refuse until the window ends") callers
``peek`` before the attempt and ``hit`` on a failure: ``peek`` answers whether one more
event would be allowed.

Every Redis error or an operation exceeding its deadline becomes
:class:`authnode.errors.Unavailable` (``"redis"``): a clear 503, never a 500 or a hang.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from authnode import redis_keys
from authnode.clients.redis import RedisClient, redis_unavailable
from authnode.errors import RateLimited
from authnode.settings import RateLimit

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Decision",
    "NullRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "decide",
]

log = logging.getLogger(__name__)

# Upper bound of one limiter operation, on top of the client's own socket timeouts (which
# cover a single attempt, not the retries and cluster redirections around it).
DEFAULT_TIMEOUT_S = 5.0

# INCR; give a key without an expiry (new, or one left without one by anything) the
# window; return the count and the remaining time in milliseconds.
_HIT_LUA = """
local count = redis.call('INCR', KEYS[1])
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  pttl = tonumber(ARGV[1])
end
return {count, pttl}
"""

# GET and PTTL together, without counting; a missing key is count 0.
_PEEK_LUA = """
local value = redis.call('GET', KEYS[1])
if not value then
  return {0, -2}
end
return {tonumber(value) or 0, redis.call('PTTL', KEYS[1])}
"""


@dataclass(frozen=True)
class Decision:
    """The outcome of a limit check.

    ``count`` is the number of events in the current window (including this one for
    ``hit``); ``remaining`` how many more would be allowed in it; ``retry_after_s`` is 0
    when allowed, otherwise the whole seconds (at least 1) until the window ends.
    """

    allowed: bool
    count: int
    remaining: int
    retry_after_s: int


def decide(count: int, pttl_ms: int, limit: RateLimit, *, counted: bool = True) -> Decision:
    """Turn a counter and its remaining time into a :class:`Decision` (pure).

    ``counted=True`` (``hit``): the event is part of ``count``; allowed when
    ``count <= limit.count``. ``counted=False`` (``peek``): would one more event be
    allowed, i.e. ``count < limit.count``. ``pttl_ms`` below 0 (no expiry known) is taken
    as a full window.
    """
    allowed = count <= limit.count if counted else count < limit.count
    remaining = max(0, limit.count - count)
    if allowed:
        retry_after_s = 0
    else:
        window_ms = pttl_ms if pttl_ms > 0 else limit.window_s * 1000
        retry_after_s = max(1, math.ceil(window_ms / 1000))
    return Decision(allowed=allowed, count=count, remaining=remaining,
                    retry_after_s=retry_after_s)


class RateLimiter(Protocol):
    async def hit(self, name: str, subject: str, limit: RateLimit) -> Decision:
        """Count one event of ``subject`` against limit ``name`` and decide."""
        ...

    async def peek(self, name: str, subject: str, limit: RateLimit) -> Decision:
        """Would one more event be allowed? Counts nothing."""
        ...

    async def reset(self, name: str, subject: str) -> None:
        """Forget the events of ``subject`` for limit ``name``."""
        ...

    async def check(self, name: str, subject: str, limit: RateLimit) -> Decision:
        """``hit``, raising :class:`RateLimited` when refused."""
        ...


class RedisRateLimiter:
    """Limits shared by all instances through one Redis key per limit and subject.

    ``on_refused`` is called with the limit name each time a ``hit`` is refused (for
    metrics); it must be cheap, and an exception it raises is logged, not propagated.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        on_refused: Callable[[str], None] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._redis = redis
        self._on_refused = on_refused
        self._timeout_s = timeout_s
        self._hit_script = redis.register_script(_HIT_LUA)
        self._peek_script = redis.register_script(_PEEK_LUA)

    async def hit(self, name: str, subject: str, limit: RateLimit) -> Decision:
        key = redis_keys.rate_limit(name, subject)
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                reply = await self._hit_script(keys=[key], args=[limit.window_s * 1000])
        count, pttl_ms = _pair(reply)
        decision = decide(count, pttl_ms, limit, counted=True)
        if not decision.allowed:
            self._observe_refusal(name)
        return decision

    async def peek(self, name: str, subject: str, limit: RateLimit) -> Decision:
        key = redis_keys.rate_limit(name, subject)
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                reply = await self._peek_script(keys=[key])
        count, pttl_ms = _pair(reply)
        return decide(count, pttl_ms, limit, counted=False)

    async def reset(self, name: str, subject: str) -> None:
        key = redis_keys.rate_limit(name, subject)
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                await self._redis.delete(key)

    async def check(self, name: str, subject: str, limit: RateLimit) -> Decision:
        decision = await self.hit(name, subject, limit)
        if not decision.allowed:
            raise RateLimited(decision.retry_after_s)
        return decision

    def _observe_refusal(self, name: str) -> None:
        if self._on_refused is None:
            return
        try:
            self._on_refused(name)
        except Exception:
            log.exception("rate limit on_refused hook failed for %s", name)


class NullRateLimiter:
    """Allows everything and stores nothing (limits disabled, or tests)."""

    async def hit(self, name: str, subject: str, limit: RateLimit) -> Decision:
        return Decision(allowed=True, count=0, remaining=limit.count, retry_after_s=0)

    async def peek(self, name: str, subject: str, limit: RateLimit) -> Decision:
        return Decision(allowed=True, count=0, remaining=limit.count, retry_after_s=0)

    async def reset(self, name: str, subject: str) -> None:
        return None

    async def check(self, name: str, subject: str, limit: RateLimit) -> Decision:
        return await self.hit(name, subject, limit)


def _pair(reply: Any) -> tuple[int, int]:
    count, pttl_ms = reply
    return int(count), int(pttl_ms)
