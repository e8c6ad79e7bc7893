"""Unit tests for authnode.tokens.keyring against an in-memory key store."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import anyio
import pytest

from authnode.errors import Unavailable
from authnode.settings import Secret
from authnode.tokens.keyring import KeyRing, KeyRingNotLoaded
from authnode.tokens.signing_keys import (
    SigningKeyError,
    generate_signing_key,
    public_jwk,
    to_document,
)

from ._fakes import FakeClock, MemoryKeyStore

SECRET = Secret("t5s_tAvg16rJQnmythG0OcspEKxfvk7Sv16LbwCa4Ao")
ROTATION_S = 7 * 86400


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _ring(store: MemoryKeyStore, clock: FakeClock, secret: Secret = SECRET) -> KeyRing:
    return KeyRing(store, secret, rotation_s=ROTATION_S, clock=clock, refresh_interval_s=30)


def _insert_key(store: MemoryKeyStore, clock: FakeClock, generation: int,
                secret: Secret = SECRET) -> str:
    key = generate_signing_key(datetime.fromtimestamp(clock(), UTC), generation=generation)
    store.docs.append(to_document(key, secret))
    return key.kid


@pytest.mark.anyio
async def test_load_on_empty_store_creates_the_first_key() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    key = ring.current_signing_key()
    assert [d["_id"] for d in store.docs] == [key.kid]
    assert store.docs[0]["generation"] == 1
    assert key.private_key is not None
    assert key.created_at == datetime.fromtimestamp(clock(), UTC)
    assert ring.jwks() == {"keys": [public_jwk(key)]}


@pytest.mark.anyio
async def test_load_uses_the_newest_stored_key() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    old = _insert_key(store, clock, 1)
    new = _insert_key(store, clock, 2)
    ring = _ring(store, clock)
    await ring.load()
    assert ring.current_signing_key().kid == new
    assert [jwk["kid"] for jwk in ring.jwks()["keys"]] == [new, old]
    assert store.insert_calls == 0


@pytest.mark.anyio
async def test_load_with_a_different_secret_fails_loudly() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    _insert_key(store, clock, 1, secret=Secret("zbZX4er0_jU_aUsnGbL-mpaLLCysuTtaJgeJN__ScNw"))
    with pytest.raises(SigningKeyError, match="SECRET_KEY"):
        await _ring(store, clock).load()


@pytest.mark.anyio
async def test_racing_first_loads_agree_on_one_key() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    store.read_delay_s = 0.01  # both read the empty store before either inserts
    rings = [_ring(store, clock) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for ring in rings:
            tg.start_soon(ring.load)
    assert len(store.docs) == 1
    assert {ring.current_signing_key().kid for ring in rings} == {store.docs[0]["_id"]}


def test_current_signing_key_before_load_raises() -> None:
    with pytest.raises(KeyRingNotLoaded):
        _ring(MemoryKeyStore(), FakeClock()).current_signing_key()


@pytest.mark.anyio
async def test_maybe_refresh_is_a_time_check_until_due() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    reads = store.newest_calls
    for _ in range(100):
        await ring.maybe_refresh()
    clock.advance(29)
    await ring.maybe_refresh()
    assert store.newest_calls == reads
    clock.advance(1)
    await ring.maybe_refresh()
    assert store.newest_calls == reads + 1


@pytest.mark.anyio
async def test_maybe_refresh_adopts_another_instances_rotation() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring, other = _ring(store, clock), _ring(store, clock)
    await ring.load()
    await other.load()
    first = ring.current_signing_key().kid
    clock.advance(10)
    rotated = await other.rotate()
    await ring.maybe_refresh()
    assert ring.current_signing_key().kid == first  # not due yet
    clock.advance(30)
    await ring.maybe_refresh()
    assert ring.current_signing_key().kid == rotated.kid
    assert [jwk["kid"] for jwk in ring.jwks()["keys"]] == [rotated.kid, first]


@pytest.mark.anyio
async def test_maybe_refresh_survives_a_store_outage(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    kid = ring.current_signing_key().kid
    store.down = True
    clock.advance(30)
    with caplog.at_level(logging.WARNING):
        await ring.maybe_refresh()
    assert "could not refresh" in caplog.text
    assert ring.current_signing_key().kid == kid
    reads = store.newest_calls
    await ring.maybe_refresh()  # backs off instead of hitting the store on every call
    assert store.newest_calls == reads
    store.down = False
    clock.advance(5)
    await ring.maybe_refresh()
    assert store.newest_calls == reads + 1


@pytest.mark.anyio
async def test_public_key_for_known_kids_reads_memory_only() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    reads = store.newest_calls
    key = ring.current_signing_key()
    assert await ring.public_key_for(key.kid) is key.public_key
    assert store.newest_calls == reads


@pytest.mark.anyio
async def test_unknown_kid_refresh_is_throttled() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    reads = store.newest_calls
    for _ in range(50):
        assert await ring.public_key_for("garbageKid") is None
    assert store.newest_calls == reads + 1
    clock.advance(4.9)
    assert await ring.public_key_for("otherGarbage") is None
    assert store.newest_calls == reads + 1
    clock.advance(0.1)
    assert await ring.public_key_for("otherGarbage") is None
    assert store.newest_calls == reads + 2


@pytest.mark.anyio
async def test_concurrent_unknown_kids_cause_one_read() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    reads = store.newest_calls
    store.read_delay_s = 0.01
    async with anyio.create_task_group() as tg:
        for index in range(20):
            tg.start_soon(ring.public_key_for, f"kid{index}")
    assert store.newest_calls == reads + 1


@pytest.mark.anyio
@pytest.mark.parametrize("kid", ["", "has space", "x" * 65, "ümlaut", "kid\n", None, 5, ["a"]])
async def test_malformed_kids_never_reach_the_store(kid: object) -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    reads = store.newest_calls
    assert await ring.public_key_for(kid) is None
    assert store.newest_calls == reads


@pytest.mark.anyio
async def test_unknown_kid_finds_a_key_rotated_elsewhere() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring, other = _ring(store, clock), _ring(store, clock)
    await ring.load()
    await other.load()
    rotated = await other.rotate()
    found = await ring.public_key_for(rotated.kid)
    assert found is not None
    assert ring.current_signing_key().kid == rotated.kid


@pytest.mark.anyio
async def test_unknown_kid_refresh_propagates_an_outage() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    store.down = True
    with pytest.raises(Unavailable):
        await ring.public_key_for("newKid")
    assert await ring.public_key_for("newKid") is None  # throttled meanwhile


@pytest.mark.anyio
async def test_jwks_publishes_current_and_previous_only() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    first = ring.current_signing_key()
    second = await ring.rotate()
    assert ring.current_signing_key() is second
    assert ring.jwks() == {"keys": [public_jwk(second), public_jwk(first)]}
    third = await ring.rotate()
    assert ring.jwks() == {"keys": [public_jwk(third), public_jwk(second)]}
    assert await ring.public_key_for(second.kid) is not None
    assert await ring.public_key_for(first.kid) is None


@pytest.mark.anyio
async def test_jwks_returns_a_copy() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    ring.jwks()["keys"][0]["x"] = "tampered"
    assert ring.jwks()["keys"][0]["x"] != "tampered"


@pytest.mark.anyio
async def test_rotate_if_due_waits_for_the_rotation_period() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    first = ring.current_signing_key().kid
    clock.advance(ROTATION_S - 1)
    assert await ring.rotate_if_due() is False
    assert ring.current_signing_key().kid == first
    clock.advance(1)
    assert await ring.rotate_if_due() is True
    assert ring.current_signing_key().kid != first
    assert ring.current_signing_key().generation == 2
    assert await ring.rotate_if_due() is False


@pytest.mark.anyio
async def test_racing_rotations_insert_one_key_and_keep_the_previous() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    rings = [_ring(store, clock) for _ in range(4)]
    for ring in rings:
        await ring.load()
    first = rings[0].current_signing_key().kid
    clock.advance(ROTATION_S)
    results: list[bool] = []

    async def rotate(ring: KeyRing) -> None:
        results.append(await ring.rotate_if_due())

    async with anyio.create_task_group() as tg:
        for ring in rings:
            tg.start_soon(rotate, ring)
    assert sorted(results) == [False, False, False, True]
    assert len(store.docs) == 2
    currents = {ring.current_signing_key().kid for ring in rings}
    assert len(currents) == 1
    for ring in rings:
        assert [jwk["kid"] for jwk in ring.jwks()["keys"]][1] == first


@pytest.mark.anyio
async def test_a_newest_key_sealed_elsewhere_is_verified_but_not_used_for_signing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    mine = ring.current_signing_key().kid
    foreign = _insert_key(store, clock, 2,
                          secret=Secret("zbZX4er0_jU_aUsnGbL-mpaLLCysuTtaJgeJN__ScNw"))
    with caplog.at_level(logging.ERROR):
        await ring.refresh()
    assert "SECRET_KEY" in caplog.text
    assert ring.current_signing_key().kid == mine
    assert await ring.public_key_for(foreign) is not None
    assert {jwk["kid"] for jwk in ring.jwks()["keys"]} == {mine, foreign}
