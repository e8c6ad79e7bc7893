"""The pure parts of authnode.shared.online: shards, minute buckets, and marking in memory.

The Redis side (PFADD batches, PFCOUNT sums, both Redis modes) is in
tests/integration/test_online.py; here a Redis stand-in that fails on any use proves that
marking never touches Redis, and a recording one shows how a flush is batched.
"""

from __future__ import annotations

import collections
from typing import Any

import anyio
import pytest

from authnode.shared import redis_keys
from authnode.shared.online import (
    BUCKET_S,
    KEY_GRACE_S,
    SHARDS,
    OnlineUsers,
    expire_at,
    minute_of,
    shard_of,
    window_minutes,
)


class NoRedis:
    """Any use of Redis is a test failure: marking must stay in memory."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Redis touched: {name}")


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _online(clock: Clock, **kwargs: Any) -> OnlineUsers:
    return OnlineUsers(NoRedis(), window_s=300, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_shard_is_stable_and_spread() -> None:
    ids = [f"user-{i}" for i in range(16_000)]
    shards = collections.Counter(shard_of(user_id) for user_id in ids)
    assert set(shards) == set(range(SHARDS))
    assert min(shards.values()) > 0.8 * len(ids) / SHARDS  # no shard starves
    # The same in every process (Python's hash() of a str is salted per process).
    assert shard_of("0f3c9a2e4b5d4c6e8a1b2c3d4e5f6a7b") == shard_of(
        "0f3c9a2e4b5d4c6e8a1b2c3d4e5f6a7b")
    assert [shard_of("alice"), shard_of("bob")] == [shard_of("alice"), shard_of("bob")]


def test_shards_have_their_own_hash_tags() -> None:
    tags = {redis_keys.online_shard(shard, 1).split("{")[1].split("}")[0]
            for shard in range(SHARDS)}
    assert len(tags) == SHARDS
    # One shard's minutes share a tag, so one PFCOUNT may read them together.
    assert (redis_keys.online_shard(3, 10).split("}")[0]
            == redis_keys.online_shard(3, 11).split("}")[0])


@pytest.mark.parametrize(("offset_s", "expected"), [
    (0.0, 6),    # at a minute's start: the window's first second opens a 6th bucket
    (30.0, 6),   # mid-minute: the oldest bucket is partly before the window
    (59.9, 6),
])
def test_window_covers_w_seconds_rounded_out_to_minutes(offset_s: float, expected: int) -> None:
    now = 28_333_333 * BUCKET_S + offset_s
    minutes = window_minutes(now, 300)
    assert len(minutes) == expected
    assert minutes[-1] == minute_of(now)
    assert minutes[0] == minute_of(now - 300)
    # Everything in [now - W, now] is inside; at most 60 s more before it.
    assert minutes[0] * BUCKET_S <= now - 300
    assert now - 300 - minutes[0] * BUCKET_S < BUCKET_S


def test_keys_outlive_every_window_that_reads_them() -> None:
    minute = 28_333_333
    last_reader = (minute + 1) * BUCKET_S + 300  # the last count whose window includes it
    assert minute in window_minutes(last_reader - 0.001, 300)
    assert minute not in window_minutes(last_reader + 0.001, 300)
    assert expire_at(minute, 300) == last_reader + KEY_GRACE_S


def test_mark_stays_in_memory_and_skips_recent_users() -> None:
    clock = Clock(28_333_333 * BUCKET_S + 1)
    online = _online(clock, mark_interval_s=5)
    online.mark("alice")
    online.mark("alice")
    online.mark("bob")
    assert online.pending == 2
    clock.now += 4.9
    online.mark("alice")
    assert online.pending == 2  # marked 4.9 s ago: skipped
    clock.now += 0.2
    online.mark("alice")
    assert online.pending == 2  # re-marked, but already queued for this minute


def test_a_new_minute_marks_again_at_once() -> None:
    clock = Clock(28_333_333 * BUCKET_S + 59.5)
    online = _online(clock, mark_interval_s=5)
    online.mark("alice")
    clock.now += 1.0  # next minute, 1 s later
    online.mark("alice")
    assert online.pending == 2  # one entry per minute bucket


def test_memory_is_bounded() -> None:
    clock = Clock()
    online = _online(clock, max_recent=100, max_pending=150)
    for i in range(1000):
        online.mark(f"user-{i}")
    assert len(online._recent) == 100
    assert online.pending == 150
    assert online.dropped == 850


def test_old_entries_are_forgotten() -> None:
    clock = Clock()
    online = _online(clock, mark_interval_s=5)
    for i in range(50):
        online.mark(f"user-{i}")
    clock.now += 6
    online.mark("late")
    assert list(online._recent) == ["late"]


class _Pipeline:
    def __init__(self, log: list[list[tuple[Any, ...]]]) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self._log = log

    async def __aenter__(self) -> _Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def pfadd(self, key: str, *members: str) -> None:
        self.commands.append(("PFADD", key, *members))

    def expireat(self, key: str, when: int) -> None:
        self.commands.append(("EXPIREAT", key, when))

    async def execute(self) -> list[int]:
        self._log.append(self.commands)
        return [1] * len(self.commands)


class RecordingRedis:
    def __init__(self) -> None:
        self.pipelines: list[list[tuple[Any, ...]]] = []

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        assert transaction is False
        return _Pipeline(self.pipelines)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_flusher_sends_one_pipeline_per_batch() -> None:
    redis = RecordingRedis()
    clock = Clock(28_333_333 * BUCKET_S + 10)
    online = OnlineUsers(redis, window_s=300, clock=clock,  # type: ignore[arg-type]
                         flush_interval_s=0.05)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(online.run)
        for i in range(200):
            online.mark(f"user-{i}")
        with anyio.fail_after(5):
            while not redis.pipelines:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert len(redis.pipelines) == 1
    commands = redis.pipelines[0]
    pfadds = [c for c in commands if c[0] == "PFADD"]
    assert len(pfadds) == SHARDS  # one PFADD per shard, not one per user
    assert sorted(m for c in pfadds for m in c[2:]) == sorted(f"user-{i}" for i in range(200))
    for command in pfadds:
        assert all(shard_of(member) == int(command[1].split("{s")[1].split("}")[0])
                   for member in command[2:])
    assert {c[2] for c in commands if c[0] == "EXPIREAT"} == {
        expire_at(minute_of(clock.now), 300)}
    assert online.pending == 0
