"""Fixtures for tests that run the real ``authnode`` binary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import TEST_DEFAULTS, AuthnodeEnv, AuthnodeProcess
from tests.services import RedisTarget, SmtpRecorder


@pytest.fixture
def authnode_env(redis_target: RedisTarget, mongo_uri: str, postgres_url: str,
                 smtp: SmtpRecorder, tmp_path: Path) -> AuthnodeEnv:
    """A fresh deployment (own databases) for each test and each Redis mode, migrated."""
    env = AuthnodeEnv({
        **TEST_DEFAULTS,
        "MONGODB_URI": mongo_uri,
        "REDIS_URL": redis_target.url,
        "REDIS_MODE": redis_target.mode,
        "POSTGRES_URL": postgres_url,
        "SMTP_URL": smtp.url,
        "SECRET_KEY": "Kj_l5ySx9EmfTEdJ5VGVrPdS8O1Rbv6XcaU8ko4D3TasjS2bQgG8l_hgsHeDpb6f",
        "PUBLIC_URL": "http://auth.example.test",
        "MAIL_FROM": "authnode <no-reply@example.test>",
    }, tmp_path)
    env.migrate()
    return env


@pytest.fixture
def authnode(authnode_env: AuthnodeEnv) -> Iterator[AuthnodeProcess]:
    """``authnode serve --role all``, ready; stopped (and its exit checked) afterwards."""
    process = authnode_env.start("all")
    yield process
    code = process.stop()
    assert code == 0, process.logs()
