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
from authnode.tokens.keyring import KeyRing
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
    back = from_document(stored, SECRET)
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
async def test_delete_older_than_keeps_the_newest(repo: SigningKeyRepository) -> None:
    for generation in range(1, 6):
        await repo.insert(_doc(generation, T0 + timedelta(days=generation)))
    deleted = await repo.delete_older_than(T0 + timedelta(days=3, hours=1))
    assert deleted == 3
    assert [d["generation"] for d in await repo.newest(10)] == [5, 4]
    assert await repo.delete_older_than(T0 + timedelta(days=100)) == 0
    assert [d["generation"] for d in await repo.newest(10)] == [5, 4]
    with pytest.raises(ValueError):
        await repo.delete_older_than(T0, keep=1)


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
