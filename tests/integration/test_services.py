"""Smoke tests for the real-server fixtures in tests/conftest.py (no authnode import)."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from email.message import EmailMessage

import psycopg
import pytest
import redis
from pymongo import AsyncMongoClient, MongoClient

from tests.services import (
    POSTGRESQL_DATABASE,
    POSTGRESQL_POOL_MAX_CONNS,
    FerretDB,
    PostgresServer,
    RedisCluster,
    RedisServer,
    RedisTarget,
    SmtpRecorder,
    async_client,
    parse_startup_nodes,
)


@pytest.mark.anyio
async def test_redis_ping_set_get(redis_target: RedisTarget) -> None:
    client = async_client(redis_target)
    try:
        assert await client.ping()
        key = f"smoke:{uuid.uuid4().hex}"
        await client.set(key, "v", ex=60)
        assert await client.get(key) == "v"
    finally:
        await client.aclose()


def test_redis_target_url_format(redis_target: RedisTarget) -> None:
    if redis_target.is_cluster:
        nodes = parse_startup_nodes(redis_target.url)
        assert len(nodes) == 6
        assert all(host == "127.0.0.1" and port < 55536 for host, port in nodes)
        assert redis_target.url.startswith("redis://127.0.0.1:")
    else:
        assert redis_target.url.startswith("redis://127.0.0.1:")
        assert redis_target.url.endswith("/0")


def test_redis_cluster_primary_for_key(redis_cluster: RedisCluster) -> None:
    key = "user:{42}:sessions"
    primary = redis_cluster.primary_for_key(key)
    assert primary.execute("ROLE")[0] == "master"
    slot = redis_cluster.keyslot(key)
    owner = [entry for entry in redis_cluster.slots() if entry[0] <= slot <= entry[1]]
    assert owner and owner[0][2] == primary.port
    primary.execute("SET", key, "x")  # would be MOVED if it was not the owner
    assert primary.execute("GET", key) == "x"
    replicas = redis_cluster.replicas_for_key(key)
    assert len(replicas) == 1 and replicas[0].execute("ROLE")[0] == "slave"


def test_redis_stop_start_cycle(redis_single: RedisServer) -> None:
    redis_single.execute("SET", "before-restart", "1")
    redis_single.stop()
    try:
        assert not redis_single.is_running
        with pytest.raises(redis.ConnectionError):
            redis_single.execute("PING", timeout=1.0)
    finally:
        redis_single.start()
    assert redis_single.execute("PING") is True
    assert redis_single.execute("GET", "before-restart") is None  # no persistence


def test_postgres_query(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT current_database(), current_setting('max_connections'), "
            "current_setting('fsync'), inet_server_addr()::text"
        ).fetchone()
    assert row is not None
    database, max_connections, fsync, address = row
    assert database == postgres_url.rsplit("/", 1)[1]
    assert database.startswith("authnode_test_")
    assert (max_connections, fsync) == ("200", "off")
    assert address.startswith("127.0.0.1")


def test_postgres_default_database_and_restart(postgres: PostgresServer) -> None:
    assert postgres.url.endswith("/authnode")
    with psycopg.connect(postgres.url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS smoke (v int)")
        conn.execute("INSERT INTO smoke VALUES (1)")
    postgres.stop()
    try:
        assert not postgres.is_running
    finally:
        postgres.start()
    with psycopg.connect(postgres.url) as conn:
        count = conn.execute("SELECT count(*) FROM smoke").fetchone()
        conn.execute("DROP TABLE smoke")
    assert count is not None and count[0] >= 1


@pytest.mark.anyio
async def test_mongo_insert_find(mongo_uri: str) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
    try:
        db = client.get_default_database()
        assert db.name.startswith("authnode_test_")
        await db.users.insert_one({"email": "a@example.com", "n": 1})
        found = await db.users.find_one({"email": "a@example.com"})
        assert found is not None and found["n"] == 1
    finally:
        await client.close()


def test_mongo_restart_keeps_data(mongo: FerretDB) -> None:
    uri = mongo.uri_for(f"authnode_test_{uuid.uuid4().hex[:8]}")
    with MongoClient[dict[str, object]](uri) as client:
        client.get_default_database().things.insert_one({"k": 1})
    mongo.stop()
    try:
        assert not mongo.is_running
    finally:
        mongo.start()
    with MongoClient[dict[str, object]](uri) as client:
        assert client.get_default_database().things.count_documents({}) == 1


def test_ferretdb_keeps_its_data_in_its_own_postgresql_database(
        mongo: FerretDB, postgres: PostgresServer, postgres_url: str) -> None:
    """The default handler: FerretDB's tables live in the `ferretdb` database, where the
    job queue's database cannot see them."""
    if mongo.handler != "postgresql":
        pytest.skip("AUTHNODE_TEST_FERRETDB_HANDLER=sqlite chose the SQLite backend")
    name = f"authnode_test_{uuid.uuid4().hex[:8]}"
    with MongoClient[dict[str, object]](mongo.uri_for(name)) as client:
        client.get_default_database().things.insert_one({"k": 1})
    with postgres.connect(POSTGRESQL_DATABASE) as conn:
        schemas = {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace")}
    assert name in schemas  # FerretDB v1 maps a MongoDB database to a schema
    job_queue_database = postgres_url.rsplit("/", 1)[1]
    with postgres.connect(job_queue_database) as conn:
        schemas = {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace")}
    assert name not in schemas


@pytest.mark.anyio
async def test_ferretdb_keeps_its_postgresql_pool_within_its_limit(
        mongo: FerretDB, postgres: PostgresServer) -> None:
    """FerretDB's pool shares PostgreSQL's max_connections with the job queue's: however
    many MongoDB clients hammer it, it holds at most POSTGRESQL_POOL_MAX_CONNS."""
    if mongo.handler != "postgresql":
        pytest.skip("AUTHNODE_TEST_FERRETDB_HANDLER=sqlite chose the SQLite backend")
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        mongo.uri_for(f"authnode_test_{uuid.uuid4().hex[:8]}"), maxPoolSize=60)
    peak = 0

    def held() -> int:
        with postgres.connect(POSTGRESQL_DATABASE) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                               (POSTGRESQL_DATABASE,)).fetchone()
        assert row is not None
        return int(row[0]) - 1  # this connection

    try:
        things = client.get_default_database().things
        for _ in range(3):
            await asyncio.gather(*(things.insert_one({"n": n}) for n in range(60)),
                                 *(things.find_one({"n": n}) for n in range(60)))
            peak = max(peak, held())
    finally:
        await client.close()
    print(f"FerretDB held {peak} PostgreSQL connections")
    assert 0 < peak <= POSTGRESQL_POOL_MAX_CONNS


def _send(recorder: SmtpRecorder, to: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = "noreply@authnode.test"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP(recorder.host, recorder.port, timeout=10) as client:
        client.send_message(message)


def test_smtp_records_messages(smtp: SmtpRecorder) -> None:
    assert smtp.url.startswith("smtp://127.0.0.1:")
    _send(smtp, "Alice <alice@example.com>", "Verify", "Open https://auth.test/verify?t=abc now")
    _send(smtp, "bob@example.com", "Hello", "no links")
    [message] = smtp.wait_for(1, timeout=5, to="alice@example.com")
    assert message.subject == "Verify"
    assert message.rcpt_tos == ("alice@example.com",)
    assert message.links() == ["https://auth.test/verify?t=abc"]
    assert b"Subject: Verify" in message.raw
    matching = smtp.wait_for(lambda m: m.subject == "Hello", timeout=5)
    assert [m.rcpt_tos for m in matching] == [("bob@example.com",)]
    assert len(smtp.messages()) == 2
    with pytest.raises(TimeoutError, match="received so far"):
        smtp.wait_for(3, timeout=0.2)
    smtp.clear()
    assert smtp.messages() == []


@pytest.mark.anyio
async def test_smtp_wait_for_async_and_failure(smtp: SmtpRecorder) -> None:
    smtp.failure = "451 4.3.0 try again later"
    with pytest.raises(smtplib.SMTPDataError):
        _send(smtp, "carol@example.com", "Nope", "x")
    smtp.failure = None
    _send(smtp, "carol@example.com", "Yes", "x")
    [message] = await smtp.wait_for_async(lambda m: m.is_for("CAROL@example.com"), timeout=5)
    assert message.subject == "Yes"
