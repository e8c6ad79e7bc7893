"""authnode.repositories.signing_keys (and the key ring on top of it) against FerretDB."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from pymongo import ReadPreference

from authnode.clients.mongo import MongoHandles, create_mongo
from authnode.errors import Unavailable
from authnode.repositories.signing_keys import SigningKeyRepository
from authnode.settings import Secret, Settings, load_settings
from authnode.tokens.access import AccessTokens
from authnode.tokens.keyring import KeyRing, restamp_keys
from authnode.tokens.signing_keys import from_document, generate_signing_key, to_document
from authnode.tuning import HostResources

SECRET_TEXT = "OIGxxMA7Hv2_74pGipR4yjyrD5uIMA03PzQiGFXcHOux__VqlcD-p9qjn7jUk_S3"
SECRET = Secret(SECRET_TEXT)
T0 = datetime(2025, 5, 1, 8, 30, 15, 987654, tzinfo=UTC)


def _settings(uri: str) -> Settings:
    return load_settings({"MONGODB_URI": uri, "SECRET_KEY": SECRET_TEXT},
                         host=HostResources(cpus=2, memory_bytes=8 << 30))


@pytest.fixture
async def mongo(mongo_uri: str) -> AsyncIterator[MongoHandles]:
    handles = create_mongo(_settings(mongo_uri))
    try:
        yield handles
    finally:
        await handles.close()


@pytest.fixture
async def repo(mongo: MongoHandles) -> SigningKeyRepository:
    repository = SigningKeyRepository(mongo.primary)
    await repository.ensure_indexes()
    return repository


def _doc(generation: int, created_at: datetime) -> dict[str, object]:
    return to_document(generate_signing_key(created_at, generation=generation), SECRET)


@pytest.mark.anyio
async def test_ensure_indexes_is_idempotent(mongo: MongoHandles) -> None:
    repository = SigningKeyRepository(mongo.primary)
    await repository.ensure_indexes()
    await repository.ensure_indexes()
    info = await mongo.primary["signing_keys"].index_information()
    keys = {tuple(spec["key"]): spec.get("unique", False) for spec in info.values()}
    assert keys[(("created_at", 1),)] is False
    assert keys[(("generation", 1),)] is True


@pytest.mark.anyio
async def test_documents_round_trip(repo: SigningKeyRepository) -> None:
    key = generate_signing_key(T0, generation=1)
    assert await repo.insert(to_document(key, SECRET)) is True
    [stored] = await repo.newest(5)
    assert isinstance(stored["sealed_private_key"], bytes)
    back = from_document(stored, [SECRET], private=True)
    assert (back.kid, back.generation, back.created_at) == (
        key.kid, key.generation, key.created_at)
    assert back.private_key is not None


@pytest.mark.anyio
async def test_newest_orders_by_generation_and_limits(repo: SigningKeyRepository) -> None:
    docs = [_doc(generation, T0 + timedelta(days=generation)) for generation in (2, 1, 4, 3)]
    for doc in docs:
        assert await repo.insert(doc)
    newest = await repo.newest(2)
    assert [d["generation"] for d in newest] == [4, 3]
    assert [d["generation"] for d in await repo.newest(10)] == [4, 3, 2, 1]
    with pytest.raises(ValueError):
        await repo.newest(0)


@pytest.mark.anyio
async def test_duplicate_generation_or_kid_is_refused(repo: SigningKeyRepository) -> None:
    first = _doc(1, T0)
    assert await repo.insert(first)
    assert await repo.insert(_doc(1, T0 + timedelta(seconds=1))) is False
    same_kid = _doc(2, T0)
    same_kid["_id"] = first["_id"]
    assert await repo.insert(same_kid) is False
    assert len(await repo.newest(10)) == 1


@pytest.mark.anyio
async def test_reads_go_to_the_primary_even_from_the_replica_handle(
        mongo: MongoHandles) -> None:
    repository = SigningKeyRepository(mongo.replica)
    assert repository._keys.read_preference == ReadPreference.PRIMARY
    await repository.ensure_indexes()
    assert await repository.insert(_doc(1, T0))
    assert len(await repository.newest(1)) == 1


@pytest.mark.anyio
async def test_retire_marks_once_drops_the_private_half_and_names_missing_kids(
        repo: SigningKeyRepository) -> None:
    doc = _doc(1, T0)
    await repo.insert(doc)
    at = T0.replace(microsecond=987000) + timedelta(hours=1)  # BSON keeps milliseconds
    assert await repo.retire(str(doc["_id"]), at) == "retired"
    assert await repo.retire(str(doc["_id"]), at + timedelta(hours=1)) == "already retired"
    assert await repo.retire("noSuchKid", at) == "missing"
    [stored] = await repo.newest(1)
    assert stored["retired_at"] == at  # the first retirement is kept
    assert "sealed_private_key" not in stored
    assert from_document(stored, [SECRET]).retired_at == at


@pytest.mark.anyio
async def test_update_applies_only_while_the_mac_is_unchanged(
        repo: SigningKeyRepository) -> None:
    legacy = _doc(1, T0)
    mac = legacy.pop("mac")
    await repo.insert(legacy)
    kid = str(legacy["_id"])
    assert await repo.update(kid, b"other", {"mac": mac}) is False
    assert await repo.update(kid, None, {"mac": mac}) is True  # had none
    assert await repo.update(kid, None, {"mac": b"x"}) is False  # has one now
    assert await repo.update(kid, mac, {"mac": mac}) is True
    assert await repo.update("noSuchKid", None, {"mac": mac}) is False
    [stored] = await repo.newest(1)
    assert from_document(stored, [SECRET], private=True).private_key is not None


@pytest.mark.anyio
async def test_delete_removes_exactly_the_named_keys(repo: SigningKeyRepository) -> None:
    docs = [_doc(generation, T0) for generation in (1, 2, 3)]
    for doc in docs:
        await repo.insert(doc)
    assert await repo.delete([]) == 0
    assert await repo.delete([str(docs[0]["_id"]), str(docs[2]["_id"]), "noSuchKid"]) == 2
    assert [d["_id"] for d in await repo.newest(10)] == [docs[1]["_id"]]


@pytest.mark.anyio
async def test_migrate_restamps_legacy_and_previous_secret_keys_on_ferretdb(
        repo: SigningKeyRepository) -> None:
    old = Secret("o" * 40)
    legacy = _doc(1, T0)
    del legacy["mac"]
    moved = to_document(generate_signing_key(T0, generation=2), old)
    for doc in (legacy, moved):
        await repo.insert(doc)
    assert await restamp_keys(repo, SECRET, old) == (2, [])
    for stored in await repo.newest(10):
        assert from_document(stored, [SECRET], private=True).private_key is not None
    ring = KeyRing(repo, SECRET, rotation_s=3600)
    await ring.load()
    assert ring.current_signing_key().kid == moved["_id"]


@pytest.mark.anyio
async def test_racing_instances_share_one_key_and_one_rotation(
        repo: SigningKeyRepository) -> None:
    clock_now = [T0.timestamp()]
    rings = [KeyRing(repo, SECRET, rotation_s=3600, clock=lambda: clock_now[0])
             for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for ring in rings:
            tg.start_soon(ring.load)
    [first] = await repo.newest(10)
    assert {ring.current_signing_key().kid for ring in rings} == {first["_id"]}

    clock_now[0] += 3600
    results: list[bool] = []

    async def rotate(ring: KeyRing) -> None:
        results.append(await ring.rotate_if_due())

    async with anyio.create_task_group() as tg:
        for ring in rings:
            tg.start_soon(rotate, ring)
    assert sorted(results) == [False, False, False, True]
    stored = await repo.newest(10)
    assert [d["generation"] for d in stored] == [2, 1]
    for ring in rings:
        assert [k["kid"] for k in ring.jwks()["keys"]] == [d["_id"] for d in stored]


@pytest.mark.anyio
async def test_tokens_verify_across_instances_after_a_rotation(
        repo: SigningKeyRepository) -> None:
    issuer, verifier = (KeyRing(repo, SECRET, rotation_s=3600) for _ in range(2))
    await issuer.load()
    await verifier.load()
    await issuer.rotate()
    minted = AccessTokens(issuer, issuer="https://auth.test", ttl_s=900)
    checked = AccessTokens(verifier, issuer="https://auth.test", ttl_s=900)
    token, _ = await minted.issue("user", "session")
    claims = await checked.verify(token)  # unknown kid: one re-read of the store
    assert (claims.sub, claims.sid) == ("user", "session")


@pytest.mark.anyio
async def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    handles = create_mongo(_settings(f"mongodb://127.0.0.1:{port}/authnode_down"))
    try:
        repository = SigningKeyRepository(handles.primary)
        with pytest.raises(Unavailable):
            await repository.newest(2)
        with pytest.raises(Unavailable):
            await repository.insert(_doc(1, T0))
    finally:
        await handles.close()
