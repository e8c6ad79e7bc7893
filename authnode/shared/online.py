"""Online users: distinct users with an authenticated request in the last ``ONLINE_WINDOW_S``
seconds, counted across every instance through Redis HyperLogLogs.

Marking costs a request nothing it waits for
    :meth:`OnlineUsers.mark` only touches memory. A user this process marked less than
    ``MARK_INTERVAL_S`` seconds ago (in the same minute bucket) is skipped; anyone else is
    queued, and the flusher (:meth:`OnlineUsers.run`, started by :func:`running`) sends the
    queue to Redis about once a second in one pipeline (one ``PFADD`` per shard and
    minute). So Redis sees a user at most about once per ``MARK_INTERVAL_S`` per process,
    and no request ever awaits Redis for this. Redis errors in the flusher are logged and
    the batch is dropped: online counts are best-effort, never a reason to fail a request.

Keys are sharded, and why
    One HyperLogLog per (shard, minute): :func:`authnode.shared.redis_keys.online_shard`. A user
    always lands in the same shard (a stable hash of the id, the same in every process).
    Each shard has its own ``{hash tag}``, so in a Redis Cluster the shards live in
    different slots spread over the primaries. One key per minute would send every
    instance's every ``PFADD`` to the one node owning that slot: a write hot spot that
    adding nodes could never relieve, which is the opposite of how this service scales.

Counting
    Per shard, one ``PFCOUNT`` over that shard's minute keys in the window (they share the
    shard's hash tag, so one command may read them together in a cluster; ``PFCOUNT`` of
    several keys counts their union, so a user active in several minutes counts once).
    Then the shard counts are added up; the shards partition the users, so adding them
    double-counts no one. The shards are read together: one pipeline on a single Redis;
    in a cluster (whose pipelines refuse multi-key commands) concurrent commands, each to
    the primary owning its shard.

Error bound
    HyperLogLog's standard error is 0.81 % of each shard's count (Redis uses 16384
    registers). The shard estimates are independent, so the total's standard error is at
    most 0.81 % of the total (about 0.81 % / sqrt(SHARDS) when the shards are even); small
    counts (tens of users per shard) come out exact in practice.

Window rounding
    Activity is bucketed by UTC minute. A count covers every bucket from the one holding
    ``now - W`` to the current one, so everyone active in the last W seconds is counted,
    and so may be someone active up to 60 s before that: the effective window is between W
    and W + 60 seconds. Marks reach Redis about ``FLUSH_INTERVAL_S`` after the request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from redis.asyncio.cluster import RedisCluster

from authnode.clients.redis import REDIS_OUTAGE_ERRORS, RedisClient, redis_unavailable
from authnode.shared import redis_keys

log = logging.getLogger(__name__)

SHARDS = 16
BUCKET_S = 60
MARK_INTERVAL_S = 5.0
FLUSH_INTERVAL_S = 1.0
FLUSH_TIMEOUT_S = 3.0
FINAL_FLUSH_TIMEOUT_S = 2.0
COUNT_TIMEOUT_S = 3.0
# A count is reused for this long, so polling the endpoint cannot load Redis with
# 16-shard merges (each PFCOUNT of several keys merges up to 12 KiB per key).
COUNT_REUSE_S = 1.0
MAX_RECENT = 100_000
MAX_PENDING = 100_000
MEMBERS_PER_PFADD = 1000
_FLUSH_ERRORS: tuple[type[BaseException], ...] = (*REDIS_OUTAGE_ERRORS, TimeoutError)
# A minute's keys outlive the last window that can include them by this margin.
KEY_GRACE_S = 120


def shard_of(user_id: str, shards: int = SHARDS) -> int:
    """The user's shard: a stable hash (Python's ``hash()`` differs between processes)."""
    digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def minute_of(epoch_s: float) -> int:
    return int(epoch_s // BUCKET_S)


def window_minutes(now_s: float, window_s: int) -> list[int]:
    """The minute buckets a count at ``now_s`` reads: every bucket overlapping
    ``[now_s - window_s, now_s]``, oldest first."""
    return list(range(minute_of(now_s - window_s), minute_of(now_s) + 1))


def expire_at(minute: int, window_s: int) -> int:
    """Epoch second after which no window reads ``minute`` (plus a grace period); the same
    in every instance, so whoever writes last sets the same expiry."""
    return (minute + 1) * BUCKET_S + window_s + KEY_GRACE_S


class OnlineUsers:
    def __init__(self, redis: RedisClient, *, window_s: int, shards: int = SHARDS,
                 clock: Callable[[], float] = time.time,
                 mark_interval_s: float = MARK_INTERVAL_S,
                 flush_interval_s: float = FLUSH_INTERVAL_S,
                 max_recent: int = MAX_RECENT, max_pending: int = MAX_PENDING) -> None:
        self._redis = redis
        self.window_s = window_s
        self._shards = shards
        self._clock = clock
        self._mark_interval_s = mark_interval_s
        self._flush_interval_s = flush_interval_s
        self._max_recent = max_recent
        self._max_pending = max_pending
        # user id -> (time of the last mark, its minute); oldest mark first.
        self._recent: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._pending: dict[tuple[int, int], set[str]] = {}
        self._pending_count = 0
        self._wake: anyio.Event | None = None
        self._count_lock: anyio.Lock | None = None
        self._counted: tuple[float, int] | None = None
        self.dropped = 0  # marks lost (queue full, or Redis failed): for metrics

    # ------------------------------------------------------------------ marking

    def mark(self, user_id: str) -> None:
        """Note that ``user_id`` is active now. Memory only; never waits."""
        now = self._clock()
        minute = minute_of(now)
        self._forget_older_than(now - self._mark_interval_s)
        last = self._recent.get(user_id)
        if last is not None and last[1] == minute and now - last[0] < self._mark_interval_s:
            return
        self._recent[user_id] = (now, minute)
        self._recent.move_to_end(user_id)
        while len(self._recent) > self._max_recent:
            self._recent.popitem(last=False)
        if self._pending_count >= self._max_pending:
            self.dropped += 1
            return
        batch = self._pending.setdefault((shard_of(user_id, self._shards), minute), set())
        if user_id not in batch:
            batch.add(user_id)
            self._pending_count += 1
        if self._wake is not None:
            self._wake.set()

    def _forget_older_than(self, cutoff: float) -> None:
        while self._recent:
            oldest = next(iter(self._recent.values()))
            if oldest[0] >= cutoff:
                return
            self._recent.popitem(last=False)

    @property
    def pending(self) -> int:
        return self._pending_count

    async def flush(self) -> int:
        """Send the queued marks to Redis; return how many were sent (0 on failure)."""
        batch, self._pending, self._pending_count = self._pending, {}, 0
        total = sum(len(users) for users in batch.values())
        if not total:
            return 0
        try:
            with anyio.fail_after(FLUSH_TIMEOUT_S):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for (shard, minute), users in batch.items():
                        key = redis_keys.online_shard(shard, minute)
                        members = sorted(users)
                        for start in range(0, len(members), MEMBERS_PER_PFADD):
                            pipe.pfadd(key, *members[start:start + MEMBERS_PER_PFADD])
                        pipe.expireat(key, expire_at(minute, self.window_s))
                    await pipe.execute()
        except _FLUSH_ERRORS as error:
            self.dropped += total
            log.warning("online marks dropped: redis failed",
                        extra={"dependency": "redis",
                               "outcome": f"{total} dropped ({type(error).__name__})"})
            return 0
        return total

    async def run(self) -> None:
        """Flush about once a second while there is something to send; sleeps otherwise."""
        while True:
            self._wake = anyio.Event()
            if not self._pending_count:
                await self._wake.wait()
            await anyio.sleep(self._flush_interval_s)  # let a batch gather
            try:
                await self.flush()
            except Exception:  # best-effort: never take the process down over a count
                log.exception("online marks flush failed")

    # ------------------------------------------------------------------ counting

    async def count(self) -> int:
        """Distinct users active in the window, across all instances (see the module
        docstring for the error bound and the window's rounding). Raises ``Unavailable``
        when Redis does not answer."""
        if self._count_lock is None:
            self._count_lock = anyio.Lock()
        async with self._count_lock:  # concurrent callers share one Redis round trip
            now = self._clock()
            if self._counted is not None and 0 <= now - self._counted[0] < COUNT_REUSE_S:
                return self._counted[1]
            value = await self._count_now(now)
            self._counted = (now, value)
            return value

    async def _count_now(self, now: float) -> int:
        minutes = window_minutes(now, self.window_s)
        keys = [[redis_keys.online_shard(shard, minute) for minute in minutes]
                for shard in range(self._shards)]
        async with redis_unavailable():
            with anyio.fail_after(COUNT_TIMEOUT_S):
                if isinstance(self._redis, RedisCluster):
                    counts = await self._count_in_parallel(keys)
                else:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for shard_keys in keys:
                            pipe.pfcount(*shard_keys)
                        counts = await pipe.execute()
        return sum(int(count) for count in counts)

    async def _count_in_parallel(self, keys: list[list[str]]) -> list[int]:
        """A cluster pipeline refuses multi-key commands, so the shards' PFCOUNTs go out
        at once instead, each to the primary owning its shard."""
        counts = [0] * len(keys)
        errors: list[BaseException] = []

        async def one(shard: int) -> None:
            try:
                counts[shard] = int(await self._redis.pfcount(*keys[shard]))
            except _FLUSH_ERRORS as error:
                errors.append(error)

        async with anyio.create_task_group() as tasks:
            for shard in range(len(keys)):
                tasks.start_soon(one, shard)
        if errors:
            raise errors[0]
        return counts


@asynccontextmanager
async def running(online: OnlineUsers) -> AsyncIterator[OnlineUsers]:
    """Run the flusher for as long as the block lasts; on the way out, send what is left
    (bounded by ``FINAL_FLUSH_TIMEOUT_S``, so a dead Redis cannot hold up a shutdown)."""
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(online.run)
            try:
                yield online
            finally:
                tasks.cancel_scope.cancel()
    finally:
        with anyio.move_on_after(FINAL_FLUSH_TIMEOUT_S, shield=True):
            await online.flush()
