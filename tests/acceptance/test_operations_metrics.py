"""Prometheus metrics of the real ``authnode serve``: families, label hygiene, multiprocess
sums with ``--workers 2``, the worker's ``--metrics-bind`` endpoint and the queue sampler.

``/metrics`` is served on ``METRICS_BIND`` only (never on the API port): each test gives
its processes a metrics port and scrapes that."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import procrastinate
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authnode.observability.metrics import Metrics
from tests.acceptance.test_accounts_support import (
    PASSWORD,
    assert_error,
    bearer,
    describe,
    login,
    register,
    register_verified,
    running,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess, unique_email
from tests.services import RedisServer, RedisTarget, SmtpRecorder, free_port, wait_until

SEND_EMAIL = "authnode.send_email"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[httpx.Response, Samples]:
    response = httpx.get(url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text[:500]
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response, found


def get(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """Sum of every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= ls)


def label_values(found: Samples, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for n, ls in found if n == name and label in dict(ls)}


def with_metrics_port(env: AuthnodeEnv) -> tuple[AuthnodeEnv, str]:
    """The deployment with ``METRICS_BIND`` on a free port, and the URL to scrape."""
    port = free_port()
    return env.with_overrides(METRICS_BIND=f"127.0.0.1:{port}"), f"http://127.0.0.1:{port}"


def test_metric_families_after_traffic(authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    env, metrics_url = with_metrics_port(
        authnode_env.with_overrides(LOGIN_ACCOUNT_LIMIT="2/15m"))
    with running(env, "all") as node:
        client = node.client
        email, _user = register_verified(client, smtp, prefix="metrics")
        tokens = login(client, email)
        # Two wrong passwords for an unknown address, then its lockout (429).
        stranger = unique_email("stranger")
        for _ in range(2):
            assert_error(client.post("/v1/auth/login",
                                     json={"email": stranger, "password": PASSWORD}),
                         401, "invalid_credentials")
        locked = client.post("/v1/auth/login", json={"email": stranger, "password": PASSWORD})
        assert_error(locked, 429, "rate_limited")
        # A concrete session id and an email in paths must not become label values.
        second = login(client, email)
        sessions = client.get("/v1/sessions", headers=bearer(tokens["access_token"]))
        assert sessions.status_code == 200, describe(sessions)
        other = next(s["id"] for s in sessions.json()["sessions"] if not s["current"])
        gone = client.delete(f"/v1/sessions/{other}", headers=bearer(tokens["access_token"]))
        assert gone.status_code == 204, describe(gone)
        assert client.get(f"/v1/users/{email}").status_code == 404
        assert client.request("BREW", "/v1/users/me").status_code in (400, 405)
        assert second["refresh_token"]

        def job_done() -> Samples:
            found = scrape(metrics_url)[1]
            done = get(found, "authnode_jobs_processed_total", task=SEND_EMAIL,
                       outcome="succeeded")
            return found if done >= 1 else {}

        found = wait_until(job_done, 20, "the email job to be counted")

        # The profile: a miss fills the cache and a later read hits it. Verification left
        # a short-lived tombstone (no stale refill), so misses repeat until it expires.
        def profile_hit() -> bool:
            me = client.get("/v1/users/me", headers=bearer(tokens["access_token"]))
            assert me.status_code == 200, describe(me)
            return get(scrape(metrics_url)[1], "authnode_profile_cache_lookups_total",
                       result="hit") >= 1

        wait_until(profile_hit, 20, "a profile cache hit", interval=0.25)
        response, found = scrape(metrics_url)

    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert get(found, "authnode_logins_total", outcome="success") == 2
    assert get(found, "authnode_logins_total", outcome="bad_credentials") == 2
    assert get(found, "authnode_logins_total", outcome="locked") == 1
    assert get(found, "authnode_rate_limit_refusals_total", limit="login_account") >= 1
    assert get(found, "authnode_profile_cache_lookups_total", result="miss") >= 1
    assert get(found, "authnode_profile_cache_lookups_total", result="hit") >= 1
    # register + 2 logins + 2 failures (dummy hash) at least; the lockout hashes nothing.
    assert get(found, "authnode_password_hash_seconds_count") >= 5
    assert get(found, "authnode_jobs_deferred_total", task=SEND_EMAIL) >= 1
    assert get(found, "authnode_jobs_processed_total", task=SEND_EMAIL,
               outcome="succeeded") >= 1
    assert get(found, "authnode_job_duration_seconds_count", task=SEND_EMAIL) >= 1
    for queue in ("email", "maintenance"):
        assert ("authnode_job_queue_depth", frozenset({("queue", queue)})) in found
        assert ("authnode_job_queue_oldest_age_seconds", frozenset({("queue", queue)})) in found
    for pool in ("mongodb", "redis", "postgresql", "hash_threads"):
        assert get(found, "authnode_pool_size", pool=pool) >= 1, pool
    for pool in ("mongodb", "postgresql", "hash_threads"):
        assert ("authnode_pool_in_use", frozenset({("pool", pool)})) in found, pool

    # Requests by route template, method and status, with a latency histogram.
    assert get(found, "authnode_http_requests_total", route="/v1/auth/login", method="POST",
               status="200") == 2
    assert get(found, "authnode_http_requests_total", route="/v1/auth/login", method="POST",
               status="429") == 1
    assert get(found, "authnode_http_requests_total", route="/v1/sessions/<session_id>",
               method="DELETE", status="204") == 1
    assert get(found, "authnode_http_request_duration_seconds_count", route="/v1/users/me",
               method="GET", status="200") >= 2
    routes = label_values(found, "authnode_http_requests_total", "route")
    assert "unmatched" in routes
    assert all(r == "unmatched" or r.startswith("/") for r in routes), routes
    assert other not in response.text
    assert label_values(found, "authnode_http_requests_total", "method") <= {
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}
    # No email address anywhere in the exposition (labels or otherwise).
    assert "@" not in response.text
    assert email.split("@")[0] not in response.text and stranger.split("@")[0] not in response.text


def test_metrics_is_not_in_the_openapi_document(authnode: AuthnodeProcess) -> None:
    paths = authnode.client.get("/openapi.json").json()["paths"]
    assert "/metrics" not in paths
    assert "/healthz" in paths


class TestProcessModel:
    """Several processes and the queue sampler; one Redis mode is enough here."""

    @pytest.fixture
    def redis_target(self, redis_single: RedisServer) -> RedisTarget:
        if not redis_single.is_running:
            redis_single.start()
        redis_single.flushall()
        return RedisTarget(mode="single", url=redis_single.url, server=redis_single)

    def test_workers_2_counts_every_request_and_the_worker_endpoint_counts_jobs(
            self, authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
        assert authnode_env.variables["REDIS_MODE"] == "single"
        metrics_port = free_port()
        requests_sent = 60
        env, metrics_url = with_metrics_port(authnode_env)
        with (running(env, "api", workers=2) as api,
              running(authnode_env, "worker",
                      extra_args=["--metrics-bind", f"127.0.0.1:{metrics_port}"])):
            # A new connection per request, so SO_REUSEPORT spreads them over both processes.
            for _ in range(requests_sent):
                assert httpx.get(api.url + "/healthz", timeout=10).status_code == 200
            serving = {line["instance"] for line in _request_lines(api)
                       if line["route"] == "/healthz"}
            assert len(serving) == 2, f"all requests reached one process: {serving}"
            # Both processes serve the metrics port; whichever answers a scrape reports the
            # sum over both.
            assert api.client.get("/metrics").status_code == 404
            for _ in range(6):
                found = scrape(metrics_url)[1]
                assert get(found, "authnode_http_requests_total", route="/healthz",
                           method="GET", status="200") == requests_sent
            # Pool gauges add up over the live processes: the host's total.
            assert get(found, "authnode_pool_size", pool="hash_threads") == \
                2 * int(authnode_env.variables["HASH_THREADS"])

            # The worker's own endpoint: the email job of a registration, counted there.
            register(api.client, unique_email("worker-metrics"))
            worker_url = f"http://127.0.0.1:{metrics_port}"

            def sent() -> Samples:
                found = scrape(worker_url)[1]
                return found if get(found, "authnode_jobs_processed_total", task=SEND_EMAIL,
                                    outcome="succeeded") == 1 else {}

            found = wait_until(sent, 20, "the worker to count the email job")
            for queue in ("email", "maintenance"):
                assert ("authnode_job_queue_depth", frozenset({("queue", queue)})) in found
                assert ("authnode_job_queue_oldest_age_seconds",
                        frozenset({("queue", queue)})) in found
            # Metrics only there; the API process counted the deferral.
            assert httpx.get(worker_url + "/healthz", timeout=5).status_code == 404
            assert get(scrape(metrics_url)[1], "authnode_jobs_deferred_total",
                       task=SEND_EMAIL) == 1

    def test_api_instances_sharing_a_port_and_a_metrics_folder(
            self, authnode_env: AuthnodeEnv, tmp_path: Path) -> None:
        """The systemd template's shape: separate ``--workers 1`` processes on one port
        (SO_REUSEPORT) with one PROMETHEUS_MULTIPROC_DIR. Any scrape shows the sum; an
        instance that stops keeps its counters in the sum and leaves the live gauges."""
        folder = tmp_path / "metrics"
        folder.mkdir()
        metrics_port = free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}"
        # The shared folder lets both instances share the metrics port too, as they
        # share the API port.
        shared = {"PROMETHEUS_MULTIPROC_DIR": str(folder),
                  "METRICS_BIND": f"127.0.0.1:{metrics_port}"}
        port = free_port()
        hash_threads = int(authnode_env.variables["HASH_THREADS"])
        requests_sent = 40
        with running(authnode_env, "api", port=port, extra_env=shared, name="api1") as one:
            with running(authnode_env, "api", port=port, extra_env=shared, name="api2") as two:
                wait_until(lambda: '"message":"ready"' in two.logs(), 30, "api2 to be ready")
                for _ in range(requests_sent):
                    assert httpx.get(one.url + "/healthz", timeout=10).status_code == 200
                served = [any(line["route"] == "/healthz" for line in _request_lines(p))
                          for p in (one, two)]
                assert served == [True, True], "all requests reached one instance"
                for _ in range(4):
                    found = scrape(metrics_url)[1]
                    assert get(found, "authnode_http_requests_total", route="/healthz",
                               method="GET", status="200") == requests_sent
                assert get(found, "authnode_pool_size", pool="hash_threads") == 2 * hash_threads
            found = scrape(metrics_url)[1]
            assert get(found, "authnode_http_requests_total", route="/healthz", method="GET",
                       status="200") == requests_sent
            assert get(found, "authnode_pool_size", pool="hash_threads") == hash_threads

    @pytest.mark.anyio
    async def test_queue_depth_and_oldest_age_from_postgresql(
            self, authnode_env: AuthnodeEnv) -> None:
        """No worker: the jobs wait. The sampler (as the worker runs it) sees how many, and
        how long the oldest has waited."""
        with running(authnode_env, "api") as api:
            before_first = time.time()
            register(api.client, unique_email("queued"))
            after_first = time.time()
            for _ in range(2):
                register(api.client, unique_email("queued"))
            connector = procrastinate.PsycopgConnector(
                conninfo=authnode_env.variables["POSTGRES_URL"])
            await connector.open_async()
            try:
                metrics = Metrics(environ={})
                metrics.watch_job_queue(connector, ["email", "maintenance"])
                assert await metrics.sample_job_queue()
                sampled = time.time()
            finally:
                await connector.close_async()
        body = metrics.exposition()[0].decode()
        found = {(s.name, frozenset(s.labels.items())): s.value
                 for family in text_string_to_metric_families(body) for s in family.samples}
        assert get(found, "authnode_job_queue_depth", queue="email") == 3
        assert get(found, "authnode_job_queue_depth", queue="maintenance") == 0
        age = get(found, "authnode_job_queue_oldest_age_seconds", queue="email")
        # The first job was deferred between before_first and after_first.
        assert sampled - after_first - 0.05 <= age <= sampled - before_first + 0.05, age
        assert get(found, "authnode_job_queue_oldest_age_seconds", queue="maintenance") == 0


def _request_lines(process: AuthnodeProcess) -> Iterator[dict[str, object]]:
    for raw in process.logs().splitlines():
        if raw.startswith("{"):
            line = json.loads(raw)
            if line.get("message") == "request":
                yield line
