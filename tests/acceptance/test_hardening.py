"""The real ``authnode`` refuses unsafe configuration and keeps its edges tight.

* a weak ``SECRET_KEY`` or the removed ``TRUST_FORWARDED_FOR`` stops ``serve`` with exit 2
  and one line; ``authnode secret`` prints a key the settings accept;
* ``/metrics`` is not on the public API port; it is served on ``METRICS_BIND`` only;
* every response says ``X-Content-Type-Options: nosniff``, and HSTS when ``PUBLIC_URL`` is
  https;
* ``/docs`` loads nothing from another host;
* the profile cache's tombstone outlives ``MAX_REPLICA_LAG_S``.
"""

from __future__ import annotations

import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authnode.shared import redis_keys
from tests.acceptance.test_accounts_support import bearer, login, register_verified, running
from tests.harness import AuthnodeEnv
from tests.services import RedisCluster, RedisTarget, SmtpRecorder, free_port

WEAK_KEYS = {
    "example-placeholder": "replace-with-the-output-of-authnode-secret",
    "old-example-placeholder": "change-me-to-48-random-characters-from-the-command-above",
    "long-but-repetitive": "test-secret-key-" + "x" * 32,
    "one-character": "k" * 64,
    "hex-of-16-bytes": "3f1a9c0be27d4586a1b2c3d4e5f60718",
    "pattern": "0123456789abcdef" * 4,
    "not-base64-or-hex": "correct horse battery staple, correct horse battery staple!",
}


def _assert_refused(result: object, variable: str, *, mentions: tuple[str, ...] = (),
                    hidden: str | None = None) -> str:
    import subprocess

    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0], lines[0]
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    if hidden is not None:
        assert hidden not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
@pytest.mark.parametrize("key", list(WEAK_KEYS.values()), ids=list(WEAK_KEYS))
def test_serve_refuses_a_weak_secret_key(authnode_env: AuthnodeEnv, key: str) -> None:
    env = authnode_env.with_overrides(SECRET_KEY=key)
    result = env.run("serve", "--role", "all", "--bind", f"127.0.0.1:{free_port()}")
    _assert_refused(result, "SECRET_KEY", mentions=("authnode secret",), hidden=key)


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_serve_refuses_the_removed_trust_forwarded_for(authnode_env: AuthnodeEnv) -> None:
    bind = f"127.0.0.1:{free_port()}"
    for value in ("true", "false"):
        env = authnode_env.with_overrides(TRUST_FORWARDED_FOR=value)
        _assert_refused(env.run("serve", "--role", "api", "--bind", bind),
                        "TRUST_FORWARDED_FOR", mentions=("TRUSTED_PROXIES",))
    # In the .env file read from the working directory, too.
    (authnode_env.workdir / ".env").write_text("TRUST_FORWARDED_FOR=true\n")
    try:
        _assert_refused(authnode_env.run("serve", "--role", "api", "--bind", bind),
                        "TRUST_FORWARDED_FOR", mentions=("TRUSTED_PROXIES",))
    finally:
        (authnode_env.workdir / ".env").unlink()


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_authnode_secret_prints_a_key_the_settings_accept(authnode_env: AuthnodeEnv) -> None:
    keys = []
    for _ in range(2):
        result = authnode_env.run("secret")
        assert result.returncode == 0, result.stderr
        keys.append(result.stdout.strip())
    assert keys[0] != keys[1]
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", key), key
        shown = authnode_env.with_overrides(SECRET_KEY=key).run("config", "show")
        assert shown.returncode == 0, shown.stderr
        assert key not in shown.stdout
    with running(authnode_env.with_overrides(SECRET_KEY=keys[0]), "api") as node:
        assert node.client.get("/readyz").status_code == 200


def _metric(body: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_metrics_are_off_the_api_port(authnode_env: AuthnodeEnv) -> None:
    with running(authnode_env, "api") as node:
        assert node.client.get("/healthz").status_code == 200
        assert node.client.get("/readyz").status_code == 200
        assert node.client.get("/metrics").status_code == 404
    metrics_port = free_port()
    env = authnode_env.with_overrides(METRICS_BIND=f"127.0.0.1:{metrics_port}")
    with running(env, "api") as node:
        for _ in range(3):
            assert node.client.get("/healthz").status_code == 200
        assert node.client.get("/metrics").status_code == 404
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert scrape.status_code == 200
        assert _metric(scrape.text, "authnode_http_requests_total", route="/healthz",
                       status="200") == 3
        # The metrics port serves metrics and nothing else.
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/healthz",
                         timeout=10).status_code == 404


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
@pytest.mark.parametrize("public_url", ["https://auth.example.test",
                                        "http://auth.example.test"])
def test_every_response_says_nosniff_and_hsts_when_public_url_is_https(
        authnode_env: AuthnodeEnv, public_url: str) -> None:
    with running(authnode_env.with_overrides(PUBLIC_URL=public_url), "api") as node:
        client = node.client
        responses = [
            client.get("/healthz"),
            client.get("/openapi.json"),
            client.get("/docs"),
            client.get("/no/such/page"),
            client.get("/v1/users/me"),  # 401
            client.post("/v1/auth/login", content=b"{not json",
                        headers={"Content-Type": "application/json"}),  # 400
            client.post("/v1/auth/login", json={"email": "x"}),  # 422
        ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 401, 400, 422]
    for response in responses:
        assert response.headers.get("x-content-type-options") == "nosniff", response.url
        hsts = response.headers.get("strict-transport-security")
        if public_url.startswith("https://"):
            assert hsts is not None and re.fullmatch(r"max-age=\d{7,}.*", hsts), hsts
        else:
            assert hsts is None


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_docs_load_nothing_from_another_host(authnode_env: AuthnodeEnv) -> None:
    with running(authnode_env, "api") as node:
        page = node.client.get("/docs")
        assert page.status_code == 200
        # No absolute or protocol-relative URL anywhere in the page.
        assert "://" not in page.text and '"//' not in page.text, page.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert {a.rsplit(".", 1)[-1] for a in assets} == {"js", "css"}, assets
        for asset in assets:
            assert asset.startswith("/") and not asset.startswith("//"), asset
            served = node.client.get(asset)
            assert served.status_code == 200, asset
            kind = "javascript" if asset.endswith(".js") else "css"
            assert kind in served.headers["content-type"], served.headers
            assert len(served.content) > 10_000
        # Only the files the page needs: the package's other files are not served.
        assert node.client.get("/docs/assets/index.html").status_code == 404
        assert node.client.get("/docs/assets/..%2F__init__.py").status_code == 404


def _tombstone_ttl_ms(target: RedisTarget, user_id: str) -> int:
    key = redis_keys.profile(user_id)
    server = target.server
    assert server is not None
    node = server.primary_for_key(key) if isinstance(server, RedisCluster) else server
    assert node.execute("GET", key) == "!", "a write's tombstone"
    ttl_ms: int = node.execute("PTTL", key)
    return ttl_ms


def test_the_profile_tombstone_outlives_the_replica_lag(authnode_env: AuthnodeEnv,
                                                        redis_target: RedisTarget,
                                                        smtp: SmtpRecorder) -> None:
    """A profile write (here a rename) leaves a tombstone: no cache fill may happen while
    a secondary could still hand out the document from before the write."""
    env = authnode_env.with_overrides(MAX_REPLICA_LAG_S="20")
    with running(env, "all") as node:
        email, user = register_verified(node.client, smtp, prefix="lag")
        tokens = login(node.client, email)
        renamed = node.client.patch("/v1/users/me", json={"name": "Lagged"},
                                    headers=bearer(tokens["access_token"]))
        assert renamed.status_code == 200, renamed.text
        assert _tombstone_ttl_ms(redis_target, user["id"]) > 20_000
