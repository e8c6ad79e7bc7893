"""Unit tests for authnode.tokens.keyring against an in-memory key store."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from authnode.errors import InvalidToken, NotFound, Unavailable
from authnode.settings import Secret
from authnode.tokens.access import AccessTokens
from authnode.tokens.keyring import KeyRing, KeyRingNotLoaded, restamp_keys
from authnode.tokens.signing_keys import (
    SigningKeyError,
    from_document,
    generate_signing_key,
    open_private_key,
    public_jwk,
    to_document,
)

from ._fakes import FakeClock, MemoryKeyStore

SECRET = Secret("t5s_tAvg16rJQnmythG0OcspEKxfvk7Sv16LbwCa4Ao")
OLD_SECRET = Secret("Qm7vXc2LpR9sTf4WjK8nHd3YbG6eUa1ZoN5iEr0VwTy")
ROTATION_S = 7 * 86400
TTL_S = 900
# previous key trust: token lifetime + refresh interval (30 s in these rings) + 5 s skew
WINDOW_S = TTL_S + 30 + 5


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _ring(store: MemoryKeyStore, clock: FakeClock, secret: Secret = SECRET,
          previous: Secret | None = None) -> KeyRing:
    return KeyRing(store, secret, rotation_s=ROTATION_S, clock=clock, refresh_interval_s=30,
                   access_token_ttl_s=TTL_S, previous_secret=previous)


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


def _planted(store: MemoryKeyStore, clock: FakeClock, generation: int) -> str:
    """A key stored by someone with write access to MongoDB but without SECRET_KEY: their
    own pair, sealed and MACed under a secret of their own."""
    return _insert_key(store, clock, generation, secret=Secret("z" * 40))


@pytest.mark.anyio
async def test_a_planted_newest_key_is_neither_trusted_nor_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    mine = ring.current_signing_key().kid
    planted = _planted(store, clock, 2)
    with caplog.at_level(logging.ERROR):
        await ring.refresh()
        await ring.refresh()
    assert caplog.text.count(f"signing key {planted} carries no valid MAC") == 1
    assert ring.current_signing_key().kid == mine
    reads = store.newest_calls
    assert await ring.public_key_for(planted) is None
    assert store.newest_calls == reads  # a known refused kid costs no read
    assert [jwk["kid"] for jwk in ring.jwks()["keys"]] == [mine]
    # Its generation still counts: rotation goes on past it.
    rotated = await ring.rotate()
    assert rotated.generation == 3


@pytest.mark.anyio
async def test_a_restarting_instance_ignores_a_planted_key() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    mine = _insert_key(store, clock, 1)
    planted = _planted(store, clock, 2)
    ring = _ring(store, clock)
    await ring.load()
    assert ring.current_signing_key().kid == mine
    assert await ring.public_key_for(planted) is None


@pytest.mark.anyio
async def test_load_refuses_keys_written_before_macs_until_migrate_stamps_them() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    kid = _insert_key(store, clock, 1)
    del store.docs[0]["mac"]
    with pytest.raises(SigningKeyError, match="authnode migrate"):
        await _ring(store, clock).load()
    assert await restamp_keys(store, SECRET) == (1, [])
    assert await restamp_keys(store, SECRET) == (0, [])
    ring = _ring(store, clock)
    await ring.load()
    assert ring.current_signing_key().kid == kid


@pytest.mark.anyio
async def test_restamp_reports_and_leaves_planted_keys() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    _insert_key(store, clock, 1)
    planted = _planted(store, clock, 2)
    before = dict(store.docs[1])
    assert await restamp_keys(store, SECRET) == (0, [planted])
    assert store.docs[1] == before


# --------------------------------------------------------------------- previous key window


@pytest.mark.anyio
async def test_the_previous_key_is_trusted_for_the_token_lifetime_after_a_rotation() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    first = ring.current_signing_key()
    clock.advance(3 * 86400)  # long after the first key was made: the window starts now
    second = await ring.rotate()
    clock.advance(WINDOW_S - 1)
    assert await ring.public_key_for(first.kid) is first.public_key
    assert [jwk["kid"] for jwk in ring.jwks()["keys"]] == [second.kid, first.kid]
    clock.advance(1)
    reads = store.newest_calls
    assert await ring.public_key_for(first.kid) is None  # without waiting for a re-read
    assert store.newest_calls == reads
    assert [jwk["kid"] for jwk in ring.jwks()["keys"]] == [second.kid]
    await ring.refresh()
    assert await ring.public_key_for(first.kid) is None
    assert await ring.public_key_for(second.kid) is second.public_key


@pytest.mark.anyio
async def test_the_window_follows_the_access_token_lifetime() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = KeyRing(store, SECRET, rotation_s=ROTATION_S, clock=clock, refresh_interval_s=5,
                   access_token_ttl_s=60)
    assert ring.previous_trust_s == 60 + 5 + 5
    await ring.load()
    first = ring.current_signing_key()
    await ring.rotate()
    clock.advance(69)
    assert await ring.public_key_for(first.kid) is not None
    clock.advance(1)
    assert await ring.public_key_for(first.kid) is None


@pytest.mark.anyio
async def test_a_cached_token_of_the_previous_key_ends_with_the_window() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    tokens = AccessTokens(ring, issuer="https://auth.test", ttl_s=TTL_S, clock=clock)
    first = ring.current_signing_key()
    await ring.rotate()
    # Minted with the previous key by whoever stole it, with a far expiry.
    forged = _mint(first, clock, ttl_s=10 * WINDOW_S)
    await tokens.verify(forged)  # remembered from here on
    clock.advance(WINDOW_S)
    with pytest.raises(InvalidToken):
        await tokens.verify(forged)
    with pytest.raises(InvalidToken):
        await tokens.verify(_mint(first, clock, ttl_s=TTL_S))


def _mint(key: Any, clock: FakeClock, *, ttl_s: int) -> str:
    import jwt

    now = int(clock())
    return jwt.encode({"iss": "https://auth.test", "sub": "u", "sid": "s", "iat": now,
                       "exp": now + ttl_s, "jti": "j"}, key.private_key,
                      algorithm="EdDSA", headers={"kid": key.kid})


# --------------------------------------------------------------------- retire


@pytest.mark.anyio
async def test_retiring_the_current_key_rotates_first_and_refuses_it_at_once() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    before = ring.current_signing_key()
    clock.advance(10)
    now_signing = await ring.retire(before.kid)
    assert now_signing.kid != before.kid and now_signing.private_key is not None
    assert ring.current_signing_key().kid == now_signing.kid
    assert await ring.public_key_for(before.kid) is None
    assert [jwk["kid"] for jwk in ring.jwks()["keys"]] == [now_signing.kid]
    stored = next(doc for doc in store.docs if doc["_id"] == before.kid)
    assert stored["retired_at"] == datetime.fromtimestamp(clock(), UTC)
    assert "sealed_private_key" not in stored  # never signs again


@pytest.mark.anyio
async def test_retiring_the_previous_key_keeps_the_current_one() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    first = ring.current_signing_key()
    second = await ring.rotate()
    assert await ring.retire(first.kid) is ring.current_signing_key()
    assert ring.current_signing_key().kid == second.kid
    assert await ring.public_key_for(first.kid) is None
    assert await ring.public_key_for(second.kid) is not None


@pytest.mark.anyio
async def test_retiring_does_not_bring_back_the_key_before_it() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    first = ring.current_signing_key()
    clock.advance(86400)
    second = await ring.rotate()
    clock.advance(86400)  # the first key's window is long over
    await ring.retire(second.kid)
    assert await ring.public_key_for(first.kid) is None
    assert await ring.public_key_for(second.kid) is None


@pytest.mark.anyio
async def test_retiring_an_unknown_kid_is_not_found() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    with pytest.raises(NotFound):
        await ring.retire("noSuchKid")


@pytest.mark.anyio
async def test_a_retirement_reaches_another_instance_and_its_token_cache() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring, other = _ring(store, clock), _ring(store, clock)
    await ring.load()
    await other.load()
    tokens = AccessTokens(other, issuer="https://auth.test", ttl_s=TTL_S, clock=clock)
    token, _ = await tokens.issue("u", "s")
    await tokens.verify(token)  # now cached
    await ring.retire(other.current_signing_key().kid)
    await tokens.verify(token)  # the other instance has not re-read the store yet
    clock.advance(30)  # its refresh interval
    with pytest.raises(InvalidToken):
        await tokens.verify(token)
    fresh, _ = await tokens.issue("u", "s")
    await tokens.verify(fresh)


@pytest.mark.anyio
async def test_when_every_key_is_retired_a_new_one_is_made() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    kid = _insert_key(store, clock, 1)
    store.docs[0]["retired_at"] = datetime.fromtimestamp(clock(), UTC)
    store.docs[0]["mac"] = to_document(  # retired_at is not covered by the MAC
        from_document(store.docs[0], [SECRET], private=True), SECRET)["mac"]
    ring = _ring(store, clock)
    await ring.load()
    assert ring.current_signing_key().kid != kid
    assert ring.current_signing_key().generation == 2


@pytest.mark.anyio
async def test_a_retired_key_un_retired_in_the_store_never_signs_or_verifies_again() -> None:
    """Someone who can write to MongoDB removes the retirement and the keys after it."""
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    compromised = ring.current_signing_key()
    clock.advance(60)
    replacement = await ring.retire(compromised.kid)
    clock.advance(WINDOW_S)
    store.docs = [doc for doc in store.docs if doc["_id"] != replacement.kid]
    for doc in store.docs:
        doc.pop("retired_at", None)
    other = _ring(store, clock)
    with pytest.raises(SigningKeyError, match="no sealed private key"):
        await other.load()
    await ring.refresh()
    assert await ring.public_key_for(compromised.kid) is None


# --------------------------------------------------------------------- purge


@pytest.mark.anyio
async def test_purge_deletes_retired_and_superseded_keys_once_they_verify_nothing() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    first = ring.current_signing_key()
    second = await ring.rotate()
    planted = _planted(store, clock, 9)
    assert await ring.purge() == []  # current, previous in its window, planted untouched
    clock.advance(WINDOW_S)
    assert await ring.purge() == [first.kid]  # superseded, past the window
    third = await ring.rotate()
    await ring.retire(second.kid)
    assert await ring.purge() == []  # retired just now: listed for a while
    clock.advance(WINDOW_S)
    assert await ring.purge() == [second.kid]
    assert {doc["_id"] for doc in store.docs} == {third.kid, planted}
    assert await ring.public_key_for(third.kid) is not None


# --------------------------------------------------------------------- SECRET_KEY rotation


@pytest.mark.anyio
async def test_keys_under_the_previous_secret_sign_and_verify_and_new_ones_use_the_new(
) -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    old_ring = _ring(store, clock, secret=OLD_SECRET)
    await old_ring.load()
    old_key = old_ring.current_signing_key()
    with pytest.raises(SigningKeyError):
        await _ring(store, clock, secret=SECRET).load()  # without SECRET_KEY_PREVIOUS
    ring = _ring(store, clock, secret=SECRET, previous=OLD_SECRET)
    await ring.load()
    assert ring.current_signing_key().kid == old_key.kid
    assert ring.current_signing_key().private_key is not None
    new_key = await ring.rotate()
    new_doc = next(doc for doc in store.docs if doc["_id"] == new_key.kid)
    open_private_key(new_doc["sealed_private_key"], SECRET)
    with pytest.raises(SigningKeyError):
        open_private_key(new_doc["sealed_private_key"], OLD_SECRET)
    assert await ring.public_key_for(old_key.kid) is not None
    # migrate: everything under the new secret; then SECRET_KEY_PREVIOUS can go.
    assert await restamp_keys(store, SECRET, OLD_SECRET) == (1, [])
    alone = _ring(store, clock, secret=SECRET)
    await alone.load()
    assert await alone.public_key_for(old_key.kid) is not None
    assert alone.current_signing_key().kid == new_key.kid


@pytest.mark.anyio
async def test_describe_names_every_key_and_its_status() -> None:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = _ring(store, clock)
    await ring.load()
    first = ring.current_signing_key()
    second = await ring.rotate()
    clock.advance(WINDOW_S)
    third = await ring.rotate()
    await ring.retire(second.kid)
    planted = _planted(store, clock, 7)
    rows = {row["kid"]: row for row in await ring.describe()}
    assert {kid: row["status"] for kid, row in rows.items()} == {
        planted: "refused", third.kid: "current", second.kid: "retired",
        first.kid: "expired"}
    assert "MAC" in rows[planted]["detail"]


def test_secret_key_previous_is_optional_masked_and_checked_for_length() -> None:
    from authnode.settings import SettingsError, describe, load_settings
    from authnode.tuning import HostResources

    host = HostResources(cpus=2, memory_bytes=8 << 30)
    base = {"SECRET_KEY": SECRET.reveal()}
    assert load_settings(base, host=host).secret_key_previous is None
    settings = load_settings({**base, "SECRET_KEY_PREVIOUS": OLD_SECRET.reveal()}, host=host)
    assert settings.secret_key_previous == OLD_SECRET
    assert ("SECRET_KEY_PREVIOUS", "********", "environment") in describe(settings)
    with pytest.raises(SettingsError, match=r"^SECRET_KEY_PREVIOUS: ") as error:
        load_settings({**base, "SECRET_KEY_PREVIOUS": "short"}, host=host)
    assert "short" not in str(error.value)
