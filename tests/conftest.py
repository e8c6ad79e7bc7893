"""Shared fixtures: real Redis (single and cluster), PostgreSQL, FerretDB and SMTP servers.

Each server starts lazily, the first time a test asks for it, and is stopped at the end of
the session; all of them listen on free 127.0.0.1 ports and keep their files in one temp
folder (set AUTHNODE_KEEP_SERVICE_DIR=1 to keep it, with the servers' logs, for debugging).

Tests that stop, kill or pause a server must bring it back (try/finally) before they end;
the function-scoped fixtures (`redis_target`, `postgres_url`, `mongo_uri`, `smtp`) also
restart a stopped server before handing it out.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.services import (  # noqa: E402
    POSTGRESQL_DATABASE,
    FerretDB,
    OidcProviderServer,
    PostgresServer,
    RedisCluster,
    RedisServer,
    RedisTarget,
    SmtpRecorder,
    ferretdb_handler,
    free_port,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--alone", choices=["with", "without", "only"], default="with",
        help="tests marked `alone`: run them with the others (default), leave them out, or "
             "run only them. scripts/test.sh runs `--alone=without -n CORES`, then "
             "`--alone=only`, so a -m expression given by the user still applies to both.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("--alone")
    if mode == "with":
        return
    keep_alone = mode == "only"
    selected, deselected = [], []
    for item in items:
        is_alone = item.get_closest_marker("alone") is not None
        (selected if is_alone == keep_alone else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Async tests run on asyncio; pure modules parametrize "anyio_backend" themselves
    (e.g. ``@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])``)."""
    return "asyncio"


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    """One temp folder for every server's files. Mode 0755 so that the `postgres` OS user
    (PostgreSQL refuses to run as root) can reach its data folder inside it."""
    path = Path(tempfile.mkdtemp(prefix="authnode-services-"))
    path.chmod(0o755)
    yield path
    if os.environ.get("AUTHNODE_KEEP_SERVICE_DIR"):
        print(f"\nservice files kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_single(services_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), services_dir / "redis-single", name="redis-single")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(services_dir: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(services_dir / "redis-cluster")
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(free_port(), services_dir / "postgres")
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo(services_dir: Path, request: pytest.FixtureRequest) -> Iterator[FerretDB]:
    """FerretDB on the session's PostgreSQL (its own database), or on SQLite when
    AUTHNODE_TEST_FERRETDB_HANDLER=sqlite."""
    postgresql_url = None
    if ferretdb_handler() == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        postgresql_url = postgres.ensure_database(POSTGRESQL_DATABASE)
    server = FerretDB(free_port(), services_dir / "ferretdb", postgresql_url=postgresql_url)
    if postgresql_url:
        server.postgres_starts_seen = postgres.starts
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo_apart(services_dir: Path) -> Iterator[FerretDB]:
    """FerretDB on SQLite files: a MongoDB-wire store that does not go down with the
    session's PostgreSQL, for tests that stop one dependency at a time."""
    server = FerretDB(free_port(), services_dir / "ferretdb-apart")
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


# The PUBLIC_URL of tests/acceptance's deployments, and the provider name they use.
OIDC_TEST_PUBLIC_URL = "http://auth.example.test"
OIDC_TEST_PROVIDER = "idp"


@pytest.fixture(scope="session")
def oidc_provider(services_dir: Path) -> Iterator[OidcProviderServer]:
    """A real OpenID Connect provider (panva's oidc-provider under Node) whose one client
    may come back to ``OIDC_TEST_PUBLIC_URL``'s callback of ``OIDC_TEST_PROVIDER``."""
    server = OidcProviderServer(services_dir / "oidc-provider", redirect_uris=[
        f"{OIDC_TEST_PUBLIC_URL}/v1/auth/oidc/{OIDC_TEST_PROVIDER}/callback"])
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpRecorder]:
    recorder = SmtpRecorder()
    recorder.start()
    yield recorder
    recorder.stop()


@pytest.fixture
def smtp(smtp_server: SmtpRecorder) -> Iterator[SmtpRecorder]:
    """The session's SmtpRecorder, emptied (and healed: running, no failure) for each test."""
    smtp_server.failure = None
    smtp_server.refuse_next(0)
    smtp_server.start()
    smtp_server.clear()
    yield smtp_server
    smtp_server.failure = None
    smtp_server.refuse_next(0)
    smtp_server.clear()


def _heal_redis(server: RedisServer | RedisCluster) -> None:
    if isinstance(server, RedisCluster):
        if any(not node.is_running for node in server.nodes):
            server.start()
        server.wait_healthy()
    elif not server.is_running:
        server.start()


@pytest.fixture(params=["single", "cluster"], ids=["redis-single", "redis-cluster"])
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """Runs the test once per Redis mode; the data set is flushed before each test."""
    mode: str = request.param
    server: RedisServer | RedisCluster = request.getfixturevalue(
        "redis_single" if mode == "single" else "redis_cluster"
    )
    _heal_redis(server)
    server.flushall()
    return RedisTarget(mode=mode, url=server.url, server=server)


@pytest.fixture
def mongo_uri(mongo: FerretDB, request: pytest.FixtureRequest) -> str:
    """mongodb://127.0.0.1:PORT/authnode_test_<8 hex>: a fresh database for this test.

    A FerretDB on PostgreSQL is restarted when PostgreSQL was (a fault test stopped it):
    its pooled connections to the old server would fail this test's first queries."""
    if mongo.postgresql_url:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        if mongo.is_running and mongo.postgres_starts_seen != postgres.starts:
            mongo.stop()
        mongo.postgres_starts_seen = postgres.starts
    if not mongo.is_running:
        mongo.start()
    return mongo.uri_for(f"authnode_test_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """postgresql://postgres@127.0.0.1:PORT/authnode_test_<8 hex>: a fresh database for this
    test, dropped (WITH (FORCE)) afterwards."""
    if not postgres.is_running:
        postgres.start()
    name = f"authnode_test_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(name)
    yield url
    if postgres.is_running:
        postgres.drop_database(name)
