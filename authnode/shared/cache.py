"""Cache-aside for profiles: Redis first, MongoDB (``secondaryPreferred``) on a miss.

* No stampede: concurrent misses for one user in this process share one MongoDB read,
  including a miss whose read was answered before the fill but reached this process only
  after the shared read had finished (it takes that read's result; see ``_recent``).
* No stale fill: a write replaces the entry with a short-lived tombstone instead of
  deleting it, and a fill only writes where no tombstone is, so a slow reader that fetched
  the old document before the write cannot put it back after the write's invalidation.
  Misses read a secondary, which may trail the primary by up to ``MAX_REPLICA_LAG_S``:
  the tombstone outlives that lag, so no fill can cache what a lagging secondary still
  holds from before the write.
* Redis down: reads fall back to MongoDB and still answer; invalidation raises
  ``Unavailable`` so a write is refused rather than leaving a stale entry behind.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from authnode.clients.redis import REDIS_OUTAGE_ERRORS, RedisClient, redis_unavailable
from authnode.shared import redis_keys

TOMBSTONE = b"!"
# Beyond the replica lag: the write's own round trip and clock slack between hosts.
TOMBSTONE_MARGIN_S = 2
RECENT_FLIGHTS = 1024

# Set the value unless a tombstone is there (KEYS[1]; ARGV: value, ttl seconds, tombstone).
_FILL = """
if redis.call('GET', KEYS[1]) == ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""



def tombstone_ttl_s(max_replica_lag_s: int) -> int:
    """How long a write keeps fills away: longer than any secondary may lag."""
    return max_replica_lag_s + TOMBSTONE_MARGIN_S


Loader = Callable[[str], Awaitable[dict[str, Any] | None]]


class _Flight:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: dict[str, Any] | None = None
        self.error: BaseException | None = None


class ProfileCache:
    def __init__(self, redis: RedisClient, load: Loader, *, ttl_s: int, tombstone_ttl_s: int,
                 on_hit: Callable[[], None] = lambda: None,
                 on_miss: Callable[[], None] = lambda: None) -> None:
        self._redis = redis
        self._load = load
        self._ttl_s = ttl_s
        self._tombstone_ttl_s = tombstone_ttl_s
        self._fill = redis.register_script(_FILL)
        self._flights: dict[str, _Flight] = {}
        # The last finished read per user, with its place in the order of finished reads
        # (bounded). A miss whose Redis read began before that read finished was concurrent
        # with it and takes its result, exactly as if it had joined it in flight.
        self._finished = 0
        self._recent: OrderedDict[str, tuple[int, _Flight]] = OrderedDict()
        self._on_hit = on_hit
        self._on_miss = on_miss

    def key(self, user_id: str) -> str:
        return redis_keys.profile(user_id)

    async def get(self, user_id: str, *,
                  entry: tuple[bytes | None] | None = None) -> dict[str, Any] | None:
        """The public profile, or None if the user does not exist.

        ``entry``: the value of :meth:`key` when the caller has read it already (in the
        same round trip as another read); a 1-tuple, ``(None,)`` for an absent key."""
        asked = self._finished  # before the read: any read finishing later was concurrent
        raw: bytes | str | None
        if entry is not None:
            raw = entry[0]
        else:
            try:
                raw = await self._redis.get(self.key(user_id))
            except REDIS_OUTAGE_ERRORS:
                raw = None
        if raw is not None and raw != TOMBSTONE:
            self._on_hit()
            value: dict[str, Any] = json.loads(raw)
            return value
        self._on_miss()
        return await self._load_once(user_id, fill=raw is None, asked=asked)

    def cached(self, raw: bytes | None) -> dict[str, Any] | None:
        """The profile in a value of :meth:`key` read by the caller, or None for an
        absent key or a tombstone (nothing is loaded; a refresh reads the user itself
        then: a miss here fills nothing)."""
        if raw is None or raw == TOMBSTONE:
            self._on_miss()
            return None
        self._on_hit()
        value: dict[str, Any] = json.loads(raw)
        return value

    async def _load_once(self, user_id: str, *, fill: bool,
                         asked: int) -> dict[str, Any] | None:
        flight = self._flights.get(user_id)
        recent = self._recent.get(user_id)
        if flight is None and recent is not None and recent[0] > asked:
            flight = recent[1]
        if flight is not None:
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        flight = self._flights[user_id] = _Flight()
        try:
            flight.value = await self._load(user_id)
            if fill and flight.value is not None:
                await self._store(user_id, flight.value)
            return flight.value
        except BaseException as error:
            flight.error = error
            raise
        finally:
            del self._flights[user_id]
            self._finished += 1
            self._recent[user_id] = (self._finished, flight)
            self._recent.move_to_end(user_id)
            if len(self._recent) > RECENT_FLIGHTS:
                self._recent.popitem(last=False)
            flight.done.set()

    async def _store(self, user_id: str, profile: dict[str, Any]) -> None:
        try:
            await self._fill(keys=[redis_keys.profile(user_id)],
                             args=[json.dumps(profile, separators=(",", ":")),
                                   self._ttl_s, TOMBSTONE])
        except REDIS_OUTAGE_ERRORS:
            pass  # the cache is an optimisation; the answer is already in hand

    async def invalidate(self, user_id: str) -> None:
        async with redis_unavailable():
            await self._redis.set(redis_keys.profile(user_id), TOMBSTONE, ex=self._tombstone_ttl_s)
