"""Rate limits and the login lockout, shared by every authnode instance through Redis.

**Rate limits.** Each limit (``name``) and subject (an IP address, an email address) has
one counter key, :func:`authnode.shared.redis_keys.rate_limit`, and every operation is one Lua
script on that one key: atomic, and the same on a single Redis and on a Redis Cluster.

Window semantics: a **fixed window that starts at the first event**. The first event of a
subject creates the counter with an expiry of ``limit.window_s``; later events only
increment it and never move the expiry. So with ``20/1h``:

* the 1st to 20th events inside the window are allowed, the 21st and later are refused;
* a refusal lasts until the window that began with the first event ends (``Retry-After``
  says how long), then the counter disappears and the subject starts afresh;
* refused events still count but do not extend the window, so hammering cannot keep a
  subject refused beyond the window.

This is cheaper and simpler than a sliding window (one key, one integer) at the price of
allowing up to ``2 * count`` events around a window boundary, which is fine for abuse
limits.

**Lockout** (failed password checks of one account: login, and the current password of
change-password and delete-account). Two counters per account, both under the account's
hash tag (:func:`authnode.shared.redis_keys.account_tag`) so that one script reads and writes
them together, in one Redis Cluster slot:

* failures from one client address, ``LOGIN_ACCOUNT_LIMIT`` (default ``10/15m``): an
  attacker's address locks only itself out of the account, and the owner, from their
  own address, still gets in;
* failures from every address together, ``LOGIN_ACCOUNT_TOTAL_LIMIT`` (default
  ``100/1h``, ASVS's reference), which bounds a guesser spraying from many addresses. At
  the defaults one address adds at most 40 an hour (four windows of 10), so it takes at
  least three; once it is reached the account is locked for every address until its
  window ends: that is the price of the bound.

An attempt is **reserved before its password is checked**:
:meth:`RateLimiter.reserve_attempt` is one script that refuses if either counter is full
and otherwise counts the attempt as a failure in both. Concurrent guesses therefore
cannot all pass a check made before any of them counted: at most
``LOGIN_ACCOUNT_LIMIT``'s count of password checks per address and window, however many
arrive at once. A right password then releases the attempt
(:meth:`RateLimiter.release_attempt`, one script): it clears this address's failures
(the password was proved from it) and takes back its own count from the total (the other
addresses' failures still count). A process that dies between the two leaves the attempt
counted as a failure, the safe side. A refused attempt counts nothing, so hammering a
locked address neither keeps it locked beyond its window nor pushes the account's total
towards locking out everyone.

The per-IP login limit (``login_ip``) is a separate key and script, checked first: it
counts an address's attempts on every account, so its key cannot carry any one account's
hash tag, and in a Redis Cluster no one script can reach it and the account's keys. So a
login makes two Redis calls with a wrong password (IP, reservation) and three with a right
one (and the release): each is needed, the release because the reservation must be made
before anyone knows whether the password is right.

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
from redis.asyncio.cluster import RedisCluster

from authnode.clients.redis import RedisClient, redis_unavailable
from authnode.errors import RateLimited
from authnode.settings import RateLimit
from authnode.shared import redis_keys

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Decision",
    "NullRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "decide",
    "decide_reservation",
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

# KEYS: the account's failures from this client, and from every client.
# ARGV: the two limits' counts, then their windows in milliseconds.
# Refused (either counter full): count nothing; return the longer wait of the full ones.
# Allowed: count the attempt as a failure in both; return the new counts.
_RESERVE_LUA = """
local counts = {}
local refused = false
local wait_ms = 0
for i = 1, 2 do
  counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if counts[i] >= tonumber(ARGV[i]) then
    refused = true
    local pttl = redis.call('PTTL', KEYS[i])
    if pttl < 0 then
      -- a counter without an expiry would lock for ever
      redis.call('PEXPIRE', KEYS[i], ARGV[i + 2])
      pttl = tonumber(ARGV[i + 2])
    end
    wait_ms = math.max(wait_ms, pttl)
  end
end
if refused then
  return {0, counts[1], counts[2], wait_ms}
end
for i = 1, 2 do
  counts[i] = redis.call('INCR', KEYS[i])
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[i + 2])
  end
end
return {1, counts[1], counts[2], 0}
"""

# KEYS as for a reservation. The password was right: forget this client's failures, and
# take this attempt's count back from the total (never below zero, never re-creating it).
_RELEASE_LUA = """
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('DECR', KEYS[2]) <= 0 then
  redis.call('DEL', KEYS[2])
end
return 1
"""


@dataclass(frozen=True)
class Decision:
    """The outcome of a limit check.

    ``count`` is the number of events in the current window (including this one when
    allowed); ``remaining`` how many more would be allowed in it; ``retry_after_s`` is 0
    when allowed, otherwise the whole seconds (at least 1) until the window ends.
    """

    allowed: bool
    count: int
    remaining: int
    retry_after_s: int


def decide(count: int, pttl_ms: int, limit: RateLimit) -> Decision:
    """Turn a counter (this event included) and its remaining time into a
    :class:`Decision` (pure): allowed when ``count <= limit.count``. ``pttl_ms`` below 0
    (no expiry known) is taken as a full window."""
    allowed = count <= limit.count
    remaining = max(0, limit.count - count)
    if allowed:
        retry_after_s = 0
    else:
        window_ms = pttl_ms if pttl_ms > 0 else limit.window_s * 1000
        retry_after_s = max(1, math.ceil(window_ms / 1000))
    return Decision(allowed=allowed, count=count, remaining=remaining,
                    retry_after_s=retry_after_s)


def decide_reservation(reply: Any, *, per_client: RateLimit, total: RateLimit) -> Decision:
    """The :class:`Decision` of a lockout reservation from the script's reply (pure).

    ``count`` is the account's failures from this client (this attempt included when
    allowed); ``remaining`` the attempts left before either counter is full;
    ``retry_after_s`` the wait until every full counter has expired.
    """
    allowed, client_count, total_count, wait_ms = (int(value) for value in reply)
    remaining = max(0, min(per_client.count - client_count, total.count - total_count))
    # The script gives every counter an expiry, so the wait is known (0: expiring now).
    retry_after_s = 0 if allowed else max(1, math.ceil(wait_ms / 1000))
    return Decision(allowed=bool(allowed), count=client_count, remaining=remaining,
                    retry_after_s=retry_after_s)


class RateLimiter(Protocol):
    async def hit(self, name: str, subject: str, limit: RateLimit) -> Decision:
        """Count one event of ``subject`` against limit ``name`` and decide."""
        ...

    async def check(self, name: str, subject: str, limit: RateLimit) -> Decision:
        """``hit``, raising :class:`RateLimited` when refused."""
        ...

    async def reserve_attempt(self, account: str, client: str, *, per_client: RateLimit,
                              total: RateLimit) -> Decision:
        """Before checking a password of ``account`` (its normalized address) from
        ``client`` (an address): refuse if the account is locked for this client, else
        count the attempt as a failure (see the module's "Lockout")."""
        ...

    async def release_attempt(self, account: str, client: str) -> None:
        """The reserved attempt's password was right: it is no failure."""
        ...

    async def clear_lockout(self, account: str) -> int:
        """Forget every counted failure of ``account`` (support unlocks it); the number of
        counters removed."""
        ...


class RedisRateLimiter:
    """Limits shared by all instances through Redis (see the module's docstring).

    ``on_refused`` (a metrics hook) is called with the limit name each time a ``hit`` is
    refused. A refused reservation is reported by its caller (the login outcome
    ``locked``).
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        on_refused: Callable[[str], None] = lambda name: None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._redis = redis
        self._on_refused = on_refused
        self._timeout_s = timeout_s
        self._hit_script = redis.register_script(_HIT_LUA)
        self._reserve_script = redis.register_script(_RESERVE_LUA)
        self._release_script = redis.register_script(_RELEASE_LUA)

    async def hit(self, name: str, subject: str, limit: RateLimit) -> Decision:
        key = redis_keys.rate_limit(name, subject)
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                reply = await self._hit_script(keys=[key], args=[limit.window_s * 1000])
        count, pttl_ms = reply
        decision = decide(int(count), int(pttl_ms), limit)
        if not decision.allowed:
            self._on_refused(name)
        return decision

    async def check(self, name: str, subject: str, limit: RateLimit) -> Decision:
        decision = await self.hit(name, subject, limit)
        if not decision.allowed:
            raise RateLimited(decision.retry_after_s)
        return decision

    async def reserve_attempt(self, account: str, client: str, *, per_client: RateLimit,
                              total: RateLimit) -> Decision:
        keys = _lockout_keys(account, client)
        args = [per_client.count, total.count, per_client.window_s * 1000,
                total.window_s * 1000]
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                reply = await self._reserve_script(keys=keys, args=args)
        return decide_reservation(reply, per_client=per_client, total=total)

    async def release_attempt(self, account: str, client: str) -> None:
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                await self._release_script(keys=_lockout_keys(account, client))

    async def clear_lockout(self, account: str) -> int:
        """Every counter of the account shares its hash tag, so one node holds them all:
        scanned there (rare: an operator's unlock), then deleted one by one."""
        total_key = redis_keys.login_failures_total(account)
        pattern = total_key.removesuffix(":all") + ":*"
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s * 4):
                if isinstance(self._redis, RedisCluster):
                    node = self._redis.get_node_from_key(total_key)
                    found = [k async for k in self._redis.scan_iter(
                        match=pattern, count=500, target_nodes=node)]
                else:
                    found = [k async for k in self._redis.scan_iter(match=pattern, count=500)]
                for key in found:
                    await self._redis.delete(key)
        return len(found)


def _lockout_keys(account: str, client: str) -> list[str]:
    return [redis_keys.login_failures(account, client),
            redis_keys.login_failures_total(account)]


class NullRateLimiter:
    """Allows everything and stores nothing (limits disabled, or tests)."""

    async def hit(self, name: str, subject: str, limit: RateLimit) -> Decision:
        return Decision(allowed=True, count=0, remaining=limit.count, retry_after_s=0)

    async def check(self, name: str, subject: str, limit: RateLimit) -> Decision:
        return await self.hit(name, subject, limit)

    async def reserve_attempt(self, account: str, client: str, *, per_client: RateLimit,
                              total: RateLimit) -> Decision:
        return Decision(allowed=True, count=0,
                        remaining=min(per_client.count, total.count), retry_after_s=0)

    async def release_attempt(self, account: str, client: str) -> None:
        return None

    async def clear_lockout(self, account: str) -> int:
        return 0
