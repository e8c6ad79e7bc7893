"""The connection budget against the real servers: what each one reports, and the
startup warning. ``authnode config show`` / ``check`` output is covered here too, since
it is the same report printed by the real command."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from authnode.budget import log_at_startup, probe_servers
from authnode.settings import Settings, load_settings
from authnode.tuning import HostResources
from tests.services import PostgresServer, RedisTarget

SECRET = "asa6hrNrBuxO1UhKbyECe_Mh_VcM2wtHJqKKT6Ks_aZ2hDJ1kXeA7iUcSq35NxBK"


def _settings(redis_target: RedisTarget, mongo_uri: str, postgres_url: str,
              **extra: str) -> Settings:
    return load_settings({"REDIS_URL": redis_target.url, "REDIS_MODE": redis_target.mode,
                          "MONGODB_URI": mongo_uri, "POSTGRES_URL": postgres_url,
                          "API_WORKERS": "2", "POSTGRES_POOL_SIZE": "5", **extra},
                         host=HostResources(cpus=2, memory_bytes=8 << 30))


@pytest.mark.anyio
async def test_each_server_reports_its_free_connections(
        redis_target: RedisTarget, mongo_uri: str, postgres_url: str,
        postgres: PostgresServer) -> None:
    found = await probe_servers(_settings(redis_target, mongo_uri, postgres_url))
    assert all(capacity.reachable for capacity in found.values()), found

    # FerretDB answers serverStatus without a "connections" section.
    assert found["mongodb"].free is None
    assert "not reported" in found["mongodb"].detail

    # PostgresServer runs with max_connections=200 (3 reserved for superusers).
    with postgres.connect() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity "
                           "WHERE backend_type = 'client backend'").fetchone()
    assert row is not None
    in_use_now = int(row[0]) - 1  # without the connection that asked
    free = found["postgresql"].free
    assert free is not None and 200 - 3 - in_use_now - 5 <= free <= 200 - 3 - in_use_now
    assert "max_connections 200 - 3 reserved" in found["postgresql"].detail

    redis_free = found["redis"].free
    assert redis_free is not None and 9_000 < redis_free < 10_000  # maxclients 10000
    if redis_target.is_cluster:
        assert "tightest of 3 primaries" in found["redis"].detail


@pytest.mark.anyio
async def test_a_greedy_instance_is_warned_about_at_startup(
        redis_target: RedisTarget, mongo_uri: str, postgres_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="authnode.budget")
    # 3 processes x 40 + 3 LISTEN = 123 PostgreSQL connections: over 25 % of ~190 free.
    settings = _settings(redis_target, mongo_uri, postgres_url, POSTGRES_POOL_SIZE="40",
                         CONNECTION_SHARE_WARN_PERCENT="25")
    await log_at_startup(settings, {})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "123 postgresql connections" in warnings[0]
    assert "CONNECTION_SHARE_WARN_PERCENT=25%" in warnings[0]
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "2 API processes + 1 worker process" in info[0]


def _cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTHNODE_")}
    return subprocess.run([sys.executable, "-m", "authnode", *args], cwd=tmp_path,
                          env={**clean, **env}, capture_output=True, text=True,
                          timeout=60, check=False)


def test_config_show_and_check_print_the_budget(redis_target: RedisTarget, mongo_uri: str,
                                                postgres_url: str, tmp_path: Path) -> None:
    env = {"REDIS_URL": redis_target.url, "REDIS_MODE": redis_target.mode,
           "MONGODB_URI": mongo_uri, "POSTGRES_URL": postgres_url, "API_WORKERS": "3",
           "DB_POOL_SIZE": "10", "SECRET_KEY": SECRET}
    shown = _cli(tmp_path, env, "config", "show")
    assert shown.returncode == 0, shown.stderr
    budget = shown.stdout.split("\n\n", 1)[1].splitlines()
    assert budget[0] == "connection budget (one instance: 3 API processes + 1 worker process)"
    assert budget[1].startswith("  mongodb     at most 48 (4 x (DB_POOL_SIZE 10 + 2")
    assert "free connections not reported" in budget[1]
    assert "redis" in budget[2] and "free" in budget[2]
    assert "postgresql" in budget[3] and "max_connections 200" in budget[3]

    checked = _cli(tmp_path, env, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "connection budget (one instance: 3 API processes" in checked.stdout


CONFIG_SHOW_UNREACHABLE_BOUND_S = 20.0


def test_config_show_is_quick_when_servers_are_down(tmp_path: Path) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "MONGODB_URI": "mongodb://127.0.0.1:1/x",
           "POSTGRES_URL": "postgresql://postgres@127.0.0.1:1/x"}
    started = time.monotonic()
    shown = _cli(tmp_path, env, "config", "show")
    elapsed = time.monotonic() - started
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("server unreachable") == 3
    assert "at most" in shown.stdout  # the local side is still there
    # What this catches is a probe left to a client's own default wait (pymongo's server
    # selection: 30 s) or probes run one after another; each is given ~2 s, all at once,
    # and the whole command (interpreter start included) takes ~2-3 s on a quiet machine.
    # The bound sits well under 30 s so that a busy, shared machine does not fail it.
    assert elapsed < CONFIG_SHOW_UNREACHABLE_BOUND_S, elapsed
