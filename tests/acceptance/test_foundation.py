"""The foundation as an operator and a client see it: the real ``authnode`` binary, over HTTP.

Process roles, readiness, graceful stop, JSON errors, bad settings, migrations and the
dependency check. Tests that touch Redis run once per Redis mode (``authnode_env`` and
``redis_target`` are parametrized over a single node and a cluster).
"""

from __future__ import annotations

import errno
import math
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from authnode.shared import redis_keys
from tests.harness import TEST_DEFAULTS, AuthnodeEnv, AuthnodeProcess, link_token, unique_email
from tests.services import (
    HOST,
    RedisCluster,
    RedisServer,
    RedisTarget,
    SmtpRecorder,
    free_port,
    wait_until,
)

PASSWORD = "plum-orbit-canyon-47"
SEND_EMAIL_TASK = "authnode.send_email"
# /readyz runs its probes at once, each bounded by 2 s; one answer takes at most ~2 s.
READYZ_REQUEST_TIMEOUT_S = 5.0


def json_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the API's error shape: ``{"error": {"code", "message"}}`` and nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


def readyz(process: AuthnodeProcess) -> httpx.Response:
    return httpx.get(process.url + "/readyz", timeout=READYZ_REQUEST_TIMEOUT_S)


def wait_for_readyz(process: AuthnodeProcess, status: int, timeout: float) -> httpx.Response:
    last: list[httpx.Response] = []

    def answered() -> httpx.Response | None:
        response = readyz(process)
        last[:] = [response]
        return response if response.status_code == status else None

    def describe() -> str:
        seen = f"{last[0].status_code} {last[0].text}" if last else "no answer"
        return f"/readyz to answer {status} (last: {seen})"

    return wait_until(answered, timeout, describe, max_interval=0.5)


def connection_refused(port: int) -> bool:
    """True once nothing accepts connections on the port any more."""
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError as error:
        return error.errno == errno.ECONNREFUSED


def job_statuses(postgres_url: str) -> list[str]:
    with psycopg.connect(postgres_url, connect_timeout=5) as connection:
        rows = connection.execute(
            "SELECT status FROM procrastinate_jobs WHERE task_name = %s ORDER BY id",
            (SEND_EMAIL_TASK,)).fetchall()
    return [str(status) for (status,) in rows]


def stop_all(*processes: AuthnodeProcess) -> None:
    for process in processes:
        process.kill()


# --------------------------------------------------------------------------- serve --role all


def test_serve_all_is_ready_and_errors_are_json(authnode: AuthnodeProcess) -> None:
    ready = readyz(authnode)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"mongodb": {"status": "up"},
                                                          "redis": {"status": "up"},
                                                          "postgresql": {"status": "up"}}}

    alive = authnode.client.get("/healthz")
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok"}

    json_error(authnode.client.get("/no/such/page"), 404, "not_found")
    json_error(authnode.client.post("/v1/no-such-endpoint", json={}), 404, "not_found")

    wrong_method = authnode.client.get("/v1/auth/register")
    json_error(wrong_method, 405, "method_not_allowed")
    assert "POST" in wrong_method.headers["allow"]
    json_error(authnode.client.delete("/healthz"), 405, "method_not_allowed")


# --------------------------------------------------------------------------- separate roles


def test_api_and_worker_processes_share_one_deployment(authnode_env: AuthnodeEnv,
                                                       smtp: SmtpRecorder) -> None:
    """The api process only queues the email; the worker process (a different process,
    started later) sends it; both stop cleanly on SIGTERM."""
    postgres_url = authnode_env.variables["POSTGRES_URL"]
    api = authnode_env.start("api")
    worker: AuthnodeProcess | None = None
    try:
        email = unique_email("roles")
        response = api.client.post("/v1/auth/register",
                                   json={"email": email, "password": PASSWORD})
        assert response.status_code == 202, response.text
        assert response.json() == {"status": "verification_sent"}

        # No worker runs yet: the email waits in the queue, nobody has sent it.
        assert job_statuses(postgres_url) == ["todo"]
        assert smtp.messages(to=email) == []

        worker = authnode_env.start("worker")
        [message] = smtp.wait_for(1, timeout=20, to=email)
        token = link_token(message, "/verify-email")
        assert message.links()[0].startswith("http://auth.example.test/verify-email?")
        wait_until(lambda: job_statuses(postgres_url) == ["succeeded"], 10,
                   lambda: f"the email job to succeed (statuses {job_statuses(postgres_url)})")
        assert f'"task":"{SEND_EMAIL_TASK}"' in worker.logs()
        assert SEND_EMAIL_TASK not in api.logs()

        verified = api.client.post("/v1/auth/verify-email", json={"token": token})
        assert verified.status_code == 200, verified.text
        assert verified.json()["user"]["email"] == email
        assert verified.json()["user"]["email_verified"] is True

        assert api.stop() == 0, api.logs()
        assert worker.stop() == 0, worker.logs()
    finally:
        stop_all(api, *([worker] if worker else []))


# --------------------------------------------------------------------------- graceful stop


def argon2_time_cost_for(seconds: float) -> int:
    """ARGON2_TIME_COST making one hash (19 MiB, one lane) take about ``seconds`` here."""
    from argon2 import PasswordHasher

    sample_cost = 8
    hasher = PasswordHasher(time_cost=sample_cost, memory_cost=19456, parallelism=1)
    started = time.perf_counter()
    hasher.hash("calibration-password")
    per_pass_s = (time.perf_counter() - started) / sample_cost
    return max(60, math.ceil(seconds / per_pass_s))


@dataclass
class InFlight:
    response: httpx.Response | None = None
    error: BaseException | None = None
    finished_at: float | None = None


@pytest.fixture(scope="module")
def slow_register_cost() -> int:
    # ~2.5 s per hash: long enough to signal, observe the closed listener and still have
    # the request running, short enough to keep the test quick.
    return argon2_time_cost_for(2.5)


def test_sigterm_lets_an_in_flight_request_finish(authnode_env: AuthnodeEnv,
                                                  redis_target: RedisTarget,
                                                  slow_register_cost: int) -> None:
    # A generous SHUTDOWN_TIMEOUT_MS, so the drain does not depend on how loaded the machine is.
    shutdown_timeout_ms = 20000
    shutdown_timeout_s = shutdown_timeout_ms / 1000
    process = authnode_env.start("all", extra_env={"ARGON2_TIME_COST": str(slow_register_cost),
                                                   "SHUTDOWN_TIMEOUT_MS": str(shutdown_timeout_ms)})
    try:
        # The register handler counts the request against the per-IP limit in Redis just
        # before it hashes the password: once that counter exists, the request is inside
        # the server with the (slow) hash still ahead of it.
        counter_key = redis_keys.rate_limit("register_ip", "127.0.0.1")
        in_flight = InFlight()

        def send() -> None:
            try:
                in_flight.response = httpx.post(
                    process.url + "/v1/auth/register",
                    json={"email": unique_email("drain"), "password": PASSWORD}, timeout=60)
            except BaseException as error:
                in_flight.error = error
            finally:
                in_flight.finished_at = time.monotonic()

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        wait_until(lambda: redis_key_exists(redis_target, counter_key), 10,
                   "the register request to reach its password hash")

        process.signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        wait_until(lambda: connection_refused(process.port), 5,
                   "the listener to close after SIGTERM")
        assert sender.is_alive(), "the request finished before the listener closed; " \
                                  "the hash is too fast to test draining"

        sender.join(shutdown_timeout_s + 5)
        assert not sender.is_alive()
        assert in_flight.error is None, repr(in_flight.error)
        assert in_flight.response is not None
        assert in_flight.response.status_code == 202, in_flight.response.text
        assert in_flight.finished_at is not None
        assert in_flight.finished_at - signalled_at < shutdown_timeout_s

        code = process.proc.wait(shutdown_timeout_s + 5)
        assert code == 0, process.logs()
        assert '"message":"stopped"' in process.logs()
    finally:
        process.kill()


def redis_key_exists(target: RedisTarget, key: str) -> bool:
    server = target.server
    node = server.primary_for_key(key) if isinstance(server, RedisCluster) else server
    assert isinstance(node, RedisServer)
    return bool(node.execute("EXISTS", key, timeout=1))


# --------------------------------------------------------------------------- bad settings


def test_serve_with_a_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    env = AuthnodeEnv({**TEST_DEFAULTS, "SECRET_KEY": SECRET_KEY, "DB_POOL_SIZE": "abc"},
                      tmp_path)
    result = env.run("serve", "--role", "all", "--bind", f"127.0.0.1:{free_port()}",
                     timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "DB_POOL_SIZE" in lines[0]
    assert "'abc'" in lines[0]
    assert "whole number" in lines[0]
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- readiness


@pytest.fixture
def restore_redis(redis_target: RedisTarget) -> Iterator[RedisTarget]:
    """Whatever the test does to Redis, it is running and healthy again afterwards."""
    yield redis_target
    server = redis_target.server
    if isinstance(server, RedisCluster):
        if any(not node.is_running for node in server.nodes):
            server.start()
        server.wait_healthy(30, full=True)
    elif isinstance(server, RedisServer) and not server.is_running:
        server.start()


def stop_redis(target: RedisTarget) -> None:
    server = target.server
    if isinstance(server, RedisCluster):
        for node in server.nodes:
            node.stop()
    else:
        assert isinstance(server, RedisServer)
        server.stop()


def start_redis(target: RedisTarget) -> None:
    server = target.server
    if isinstance(server, RedisCluster):
        # Every node restarts with its nodes.conf: same ids, ports and slots.
        server.start()
        server.wait_healthy(30, full=True)
    else:
        assert isinstance(server, RedisServer)
        server.start()


def test_readyz_follows_a_redis_outage_without_restart(authnode: AuthnodeProcess,
                                                       restore_redis: RedisTarget) -> None:
    assert readyz(authnode).status_code == 200

    stop_redis(restore_redis)
    down = wait_for_readyz(authnode, 503, timeout=20).json()
    assert down["status"] == "unavailable: redis"
    assert down["checks"]["redis"]["status"] == "down"
    assert down["checks"]["mongodb"] == {"status": "up"}
    assert down["checks"]["postgresql"] == {"status": "up"}
    # Liveness is not readiness: the process itself is fine.
    assert authnode.client.get("/healthz").status_code == 200

    start_redis(restore_redis)
    up = wait_for_readyz(authnode, 200, timeout=30).json()
    assert up["status"] == "ready"
    assert authnode.proc.poll() is None


# --------------------------------------------------------------------------- operator commands


SECRET_KEY = "Kj_l5ySx9EmfTEdJ5VGVrPdS8O1Rbv6XcaU8ko4D3TasjS2bQgG8l_hgsHeDpb6f"


def test_migrate_twice_succeeds_both_times(mongo_uri: str, postgres_url: str,
                                           tmp_path: Path) -> None:
    """Fresh, never-migrated databases. migrate does not touch Redis, so it runs once, not
    per Redis mode (REDIS_URL is left at its default, where nothing listens)."""
    env = AuthnodeEnv({**TEST_DEFAULTS, "MONGODB_URI": mongo_uri,
                       "POSTGRES_URL": postgres_url, "SECRET_KEY": SECRET_KEY}, tmp_path)

    first = env.run("migrate")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.splitlines() == [
        "mongodb: indexes ensured", "mongodb: address lookups created for 0 existing accounts",
        "postgresql: job-queue schema applied"]

    second = env.run("migrate")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.splitlines() == [
        "mongodb: indexes ensured", "mongodb: address lookups created for 0 existing accounts",
        "postgresql: job-queue schema already present"]

    with psycopg.connect(postgres_url, connect_timeout=5) as connection:
        (present,) = connection.execute(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone() or (False,)
    assert present


DEPENDENCIES = ("mongodb", "redis", "postgresql")


def check_lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The dependency report of ``authnode check`` (its first lines, one per dependency,
    ``NAME STATUS [(detail)]``) as {dependency: status and detail}; whatever it prints
    after that (the connection budget) is not part of it."""
    lines = {}
    for line in result.stdout.splitlines():
        name, _, rest = line.partition(" ")
        if name not in DEPENDENCIES or name in lines:
            break
        lines[name] = rest.strip()
    return lines


def test_check_reports_each_dependency(redis_target: RedisTarget, mongo_uri: str,
                                       postgres_url: str, tmp_path: Path) -> None:
    env = AuthnodeEnv({**TEST_DEFAULTS, **redis_target.env, "MONGODB_URI": mongo_uri,
                       "POSTGRES_URL": postgres_url, "SECRET_KEY": SECRET_KEY}, tmp_path)

    healthy = env.run("check")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert check_lines(healthy) == {"mongodb": "up", "redis": "up", "postgresql": "up"}

    closed_port = free_port()  # nothing listens there
    broken = env.with_overrides(
        POSTGRES_URL=f"postgresql://postgres@127.0.0.1:{closed_port}/authnode").run("check")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "Traceback" not in broken.stderr
    lines = check_lines(broken)
    assert lines["mongodb"] == "up"
    assert lines["redis"] == "up"
    assert lines["postgresql"].startswith("down"), broken.stdout
