"""``authnode.observability.metrics``: what each hook records, label hygiene, exposition.

Single-process mode only (prometheus-client picks its value storage when first imported,
so multiprocess mode is covered end to end by the acceptance test with ``--workers 2``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authnode.errors import (
    AccountDisabled,
    AccountLocked,
    EmailNotVerified,
    InvalidCredentials,
    MfaRequired,
    RateLimited,
    Unavailable,
)
from authnode.observability.metrics import MULTIPROC_ENV, Metrics, login_outcome


@pytest.fixture
def metrics() -> Metrics:
    assert not os.environ.get(MULTIPROC_ENV), "unit tests run in single-process mode"
    return Metrics(environ={})


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.exposition()
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, frozenset(labels.items())), 0.0)


def test_request_counter_and_histogram_by_route_template(metrics: Metrics) -> None:
    metrics.observe_request(route="/v1/sessions/<session_id>", method="DELETE", status=204,
                            seconds=0.03)
    metrics.observe_request(route="/v1/sessions/<session_id>", method="DELETE", status=204,
                            seconds=0.2)
    labels = {"route": "/v1/sessions/<session_id>", "method": "DELETE", "status": "204"}
    assert value(metrics, "authnode_http_requests_total", **labels) == 2
    assert value(metrics, "authnode_http_request_duration_seconds_count", **labels) == 2
    assert value(metrics, "authnode_http_request_duration_seconds_bucket",
                 **labels, le="0.05") == 1
    assert value(metrics, "authnode_http_request_duration_seconds_sum", **labels) \
        == pytest.approx(0.23)


def test_unknown_methods_share_one_label(metrics: Metrics) -> None:
    """The method is client input: anything outside the standard set is OTHER, so a client
    cannot create label values (and series) at will."""
    for method in ("FOO", "BAR", "get", "PROPFIND"):
        metrics.observe_request(route="unmatched", method=method, status=405, seconds=0.001)
    metrics.observe_request(route="unmatched", method="GET", status=404, seconds=0.001)
    methods = {dict(labels)["method"] for name, labels in samples(metrics)
               if name == "authnode_http_requests_total"}
    assert methods == {"OTHER", "GET"}
    assert value(metrics, "authnode_http_requests_total", route="unmatched", method="OTHER",
                 status="405") == 4


@pytest.mark.parametrize(("error", "outcome"), [
    (InvalidCredentials(), "bad_credentials"),
    (AccountLocked(30), "locked"),
    (RateLimited(30), "rate_limited"),
    (EmailNotVerified(), "unverified"),
    (AccountDisabled(), "disabled"),
    (MfaRequired("t", ["totp"]), "mfa_required"),
    (Unavailable("redis"), "error"),
])
def test_login_outcomes(metrics: Metrics, error: Exception, outcome: str) -> None:
    assert login_outcome(error) == outcome
    with pytest.raises(type(error)), metrics.login_attempt():
        raise error
    assert value(metrics, "authnode_logins_total", outcome=outcome) == 1
    assert value(metrics, "authnode_logins_total", outcome="success") == 0


def test_login_success_and_zero_series_exist_before_any_login(metrics: Metrics) -> None:
    # Every outcome is exported from the start, so rate() works before the first event.
    for outcome in ("success", "bad_credentials", "locked", "unverified", "disabled"):
        assert ("authnode_logins_total", frozenset({("outcome", outcome)})) in samples(metrics)
    with metrics.login_attempt():
        pass
    assert value(metrics, "authnode_logins_total", outcome="success") == 1


def test_a_lockout_counts_as_a_login_account_refusal(metrics: Metrics) -> None:
    metrics.rate_limit_refused("login_ip")
    with pytest.raises(AccountLocked), metrics.login_attempt():
        raise AccountLocked(10)
    assert value(metrics, "authnode_rate_limit_refusals_total", limit="login_account") == 1
    assert value(metrics, "authnode_rate_limit_refusals_total", limit="login_ip") == 1


def test_cache_hash_and_jobs(metrics: Metrics) -> None:
    metrics.profile_cache_miss()
    metrics.profile_cache_hit()
    metrics.profile_cache_hit()
    metrics.observe_hash_seconds(0.06)
    metrics.job_deferred("authnode.send_email")
    metrics.observe_job("authnode.send_email", "sent", 0.1)
    metrics.observe_job("authnode.send_email", "skipped:no_account", 0.1)
    metrics.observe_job("authnode.send_email", "retried", 0.1)
    metrics.observe_job("authnode.send_email", "failed", 0.1)
    assert value(metrics, "authnode_profile_cache_lookups_total", result="hit") == 2
    assert value(metrics, "authnode_profile_cache_lookups_total", result="miss") == 1
    assert value(metrics, "authnode_password_hash_seconds_count") == 1
    assert value(metrics, "authnode_password_hash_seconds_bucket", le="0.075") == 1
    assert value(metrics, "authnode_password_hash_seconds_bucket", le="0.05") == 0
    assert value(metrics, "authnode_jobs_deferred_total", task="authnode.send_email") == 1
    for outcome, count in (("succeeded", 2), ("retried", 1), ("failed", 1)):
        assert value(metrics, "authnode_jobs_processed_total", task="authnode.send_email",
                     outcome=outcome) == count
    assert value(metrics, "authnode_job_duration_seconds_count",
                 task="authnode.send_email") == 4


def test_pools_are_sampled_and_a_failing_probe_is_skipped(metrics: Metrics) -> None:
    busy = [3.0]
    metrics.watch_pool("hash_threads", size=4, in_use=lambda: busy[0])
    metrics.watch_pool("redis", size=50)

    def closed() -> float:
        raise RuntimeError("pool closed")

    metrics.watch_pool("postgresql", size=10, in_use=closed)
    assert value(metrics, "authnode_pool_size", pool="hash_threads") == 4
    assert value(metrics, "authnode_pool_size", pool="redis") == 50
    assert value(metrics, "authnode_pool_in_use", pool="hash_threads") == 3
    busy[0] = 1.0
    assert value(metrics, "authnode_pool_in_use", pool="hash_threads") == 1
    assert ("authnode_pool_in_use", frozenset({("pool", "postgresql")})) not in samples(metrics)


def test_mongo_pool_listener_counts_checked_out_connections(metrics: Metrics) -> None:
    listener = metrics.mongo_pool_listener()
    listener.connection_checked_out(None)  # type: ignore[arg-type]
    listener.connection_checked_out(None)  # type: ignore[arg-type]
    listener.connection_checked_in(None)  # type: ignore[arg-type]
    metrics.watch_pool("mongodb", size=100, in_use=listener.in_use)
    assert value(metrics, "authnode_pool_in_use", pool="mongodb") == 1


def test_exposition_formats(metrics: Metrics) -> None:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b"# TYPE authnode_http_requests_total counter" in body
    assert b"process_cpu_seconds_total" in body or sys.platform != "linux"
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_each_metrics_object_has_its_own_registry() -> None:
    one, two = Metrics(environ={}), Metrics(environ={})
    one.rate_limit_refused("register_ip")
    assert value(one, "authnode_rate_limit_refusals_total", limit="register_ip") == 1
    assert value(two, "authnode_rate_limit_refusals_total", limit="register_ip") == 0


def test_multiprocess_mode_sums_processes(tmp_path: Path) -> None:
    """Two short-lived processes count into one folder; a third process's exposition
    shows the totals, and the dead processes' pool gauges (livesum) are gone."""
    script = textwrap.dedent("""
        import sys
        from authnode.observability.metrics import Metrics
        metrics = Metrics()
        if sys.argv[1] == "count":
            metrics.rate_limit_refused("login_ip")
            metrics.watch_pool("hash_threads", size=2)
            metrics.close()
        else:
            metrics.watch_pool("hash_threads", size=2)
            sys.stdout.write(metrics.exposition()[0].decode())
    """)
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script, "count"], env=env, check=True,
                       timeout=60)
    shown = subprocess.run([sys.executable, "-c", script, "show"], env=env, check=True,
                           capture_output=True, text=True, timeout=60).stdout
    found = {(s.name, frozenset(s.labels.items())): s.value
             for family in text_string_to_metric_families(shown) for s in family.samples}
    assert found[("authnode_rate_limit_refusals_total", frozenset({("limit", "login_ip")}))] == 2
    # Only the live (showing) process's pool size remains.
    assert found[("authnode_pool_size", frozenset({("pool", "hash_threads")}))] == 2
