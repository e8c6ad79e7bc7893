"""Fixtures for the fault scenarios: one authnode deployment per test, with the Redis mode
the scenario needs (the acceptance fixtures run every test in both modes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import TEST_DEFAULTS, AuthnodeEnv
from tests.services import RedisCluster, RedisServer, RedisTarget, SmtpRecorder

EnvFactory = Callable[..., AuthnodeEnv]


def _healed(server: RedisServer | RedisCluster) -> RedisServer | RedisCluster:
    if isinstance(server, RedisCluster):
        if any(not node.is_running for node in server.nodes):
            server.start()
        server.wait_healthy(30)
    elif not server.is_running:
        server.start()
    server.flushall()
    return server


def _env_factory(server: RedisServer | RedisCluster, mode: str, mongo_uri: str,
                 postgres_url: str, smtp: SmtpRecorder, tmp_path: Path) -> EnvFactory:
    def make(**overrides: str) -> AuthnodeEnv:
        target = RedisTarget(mode=mode, url=server.url, server=server)
        env = AuthnodeEnv({
            **TEST_DEFAULTS,
            "MONGODB_URI": mongo_uri,
            "POSTGRES_URL": postgres_url,
            "SMTP_URL": smtp.url,
            "SECRET_KEY": "Kj_l5ySx9EmfTEdJ5VGVrPdS8O1Rbv6XcaU8ko4D3TasjS2bQgG8l_hgsHeDpb6f",
            "PUBLIC_URL": "http://auth.example.test",
            "MAIL_FROM": "authnode <no-reply@example.test>",
            **target.env,
            **overrides,
        }, tmp_path)
        env.migrate()
        return env

    return make


@pytest.fixture
def single_env(redis_single: RedisServer, mongo_uri: str, postgres_url: str,
               smtp: SmtpRecorder, tmp_path: Path) -> Iterator[EnvFactory]:
    """``single_env(**overrides)``: a migrated deployment on the single-node Redis."""
    yield _env_factory(_healed(redis_single), "single", mongo_uri, postgres_url, smtp, tmp_path)


@pytest.fixture
def cluster_env(redis_cluster: RedisCluster, mongo_uri: str, postgres_url: str,
                smtp: SmtpRecorder, tmp_path: Path) -> Iterator[EnvFactory]:
    """``cluster_env(**overrides)``: a migrated deployment on the Redis Cluster."""
    yield _env_factory(_healed(redis_cluster), "cluster", mongo_uri, postgres_url, smtp,
                       tmp_path)


@pytest.fixture(params=["single", "cluster"], ids=["redis-single", "redis-cluster"])
def either_env(request: pytest.FixtureRequest, mongo_uri: str, postgres_url: str,
               smtp: SmtpRecorder, tmp_path: Path) -> Iterator[EnvFactory]:
    """``either_env(**overrides)``: runs the test once per Redis mode."""
    mode: str = request.param
    server: RedisServer | RedisCluster = request.getfixturevalue(
        "redis_single" if mode == "single" else "redis_cluster")
    yield _env_factory(_healed(server), mode, mongo_uri, postgres_url, smtp, tmp_path)
