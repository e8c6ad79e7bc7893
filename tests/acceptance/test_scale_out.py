"""Scale-out behaviours over HTTP against the real ``authnode serve``, in both Redis modes:
responses a CDN may cache (and the ones it must not), the profile cache seen from several
instances and with FerretDB stopped, online users counted across instances, and the
connection budget logged at startup. (Separate hosts: tests/acceptance/test_multi_host.py.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from authnode.shared import redis_keys
from authnode.shared.cache import TOMBSTONE
from tests.acceptance.test_accounts_support import (
    assert_error,
    bearer,
    login,
    register_verified,
    running,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import FerretDB, RedisCluster, RedisTarget, SmtpRecorder, wait_until

OPENAPI_MAX_AGE_S = 3600
JWKS_MAX_AGE_S = 300  # the default of JWKS_MAX_AGE_S


# --------------------------------------------------------------------------- CDN caching


PUBLIC_DOCUMENTS = {"/.well-known/jwks.json": JWKS_MAX_AGE_S, "/openapi.json": OPENAPI_MAX_AGE_S}


def test_public_documents_carry_an_etag_and_revalidate(authnode_env: AuthnodeEnv) -> None:
    with running(authnode_env, "all") as one, running(authnode_env, "api") as two:
        for path, max_age_s in PUBLIC_DOCUMENTS.items():
            first = one.client.get(path)
            assert first.status_code == 200
            assert first.headers["Cache-Control"] == f"public, max-age={max_age_s}"
            etag = first.headers["ETag"]
            assert etag.startswith('"') and etag.endswith('"')  # strong
            # Every instance has the same ETag for the same document: a CDN in front of
            # several origins can revalidate against any of them.
            assert two.client.get(path).headers["ETag"] == etag

            for if_none_match in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
                cached = two.client.get(path, headers={"If-None-Match": if_none_match})
                assert cached.status_code == 304, (path, if_none_match, cached.text)
                assert cached.content == b""
                assert cached.headers["ETag"] == etag
                assert cached.headers["Cache-Control"] == f"public, max-age={max_age_s}"
                assert "content-type" not in cached.headers
            changed = one.client.get(path, headers={"If-None-Match": '"something-else"'})
            assert changed.status_code == 200 and changed.content == first.content

        # The OpenAPI document describes the online count, its error bound and rounding.
        operation = one.client.get("/openapi.json").json()["paths"]["/v1/stats/online"]["get"]
        assert operation["security"] == [{"bearer": []}]
        assert "0.81 %" in operation["description"]
        assert "+ 60 s" in operation["description"]
        assert {"200", "401", "503"} <= set(operation["responses"])


def test_personal_responses_are_never_stored(authnode: AuthnodeProcess,
                                             smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    auth = bearer(login(client, email)["access_token"])
    assert_error(client.get("/v1/stats/online"), 401, "invalid_token")  # signed-in users only
    for response in (client.get("/v1/users/me", headers=auth),
                     client.get("/v1/sessions", headers=auth),
                     client.get("/v1/stats/online", headers=auth),
                     client.get("/v1/users/me"),  # 401
                     client.post("/v1/auth/logout", headers=auth)):
        assert response.headers["Cache-Control"] == "no-store", (
            response.request.url, response.status_code)


# --------------------------------------------------------------------------- profile cache


def cached_profile(target: RedisTarget, user_id: str) -> str | None:
    """The profile entry as Redis holds it (None: absent; "!": a write's tombstone)."""
    key = redis_keys.profile(user_id)
    server = target.server
    assert server is not None
    node = server.primary_for_key(key) if isinstance(server, RedisCluster) else server
    value: str | None = node.execute("GET", key)
    return value


@pytest.fixture
def restore_mongo(mongo: FerretDB) -> Iterator[FerretDB]:
    try:
        yield mongo
    finally:
        if not mongo.is_running:
            mongo.start()


def test_repeated_profile_reads_do_not_touch_mongodb(authnode_env: AuthnodeEnv,
                                                     smtp: SmtpRecorder,
                                                     redis_target: RedisTarget,
                                                     restore_mongo: FerretDB) -> None:
    """Warm the cache, stop FerretDB: reads still answer (from Redis), a write cannot."""
    with running(authnode_env, "all") as api:
        email, user = register_verified(api.client, smtp, name="Ada")
        auth = bearer(login(api.client, email)["access_token"])
        warm = api.client.get("/v1/users/me", headers=auth)
        assert warm.status_code == 200
        # Verifying left a short tombstone (no fill may race a write); once it is gone,
        # the next read fills the cache.
        wait_until(lambda: api.client.get("/v1/users/me", headers=auth).status_code == 200
                   and cached_profile(redis_target, user["id"]) not in (None,
                                                                        TOMBSTONE.decode()),
                   15, "a read to fill the profile cache")

        restore_mongo.stop()
        try:
            for _ in range(5):
                again = api.client.get("/v1/users/me", headers=auth)
                assert again.status_code == 200, again.text
                assert again.json() == warm.json()
                assert again.headers["ETag"] == warm.headers["ETag"]
            # A write needs MongoDB: a clear 503 (it invalidated the entry first, so the
            # cache can never serve what the write might have changed) ...
            assert_error(api.client.patch("/v1/users/me", headers=auth,
                                          json={"name": "Grace"}), 503, "unavailable")
            # ... so the next read misses, and with MongoDB down it is a 503 too.
            assert_error(api.client.get("/v1/users/me", headers=auth), 503, "unavailable")
        finally:
            restore_mongo.start()
        back = wait_until(lambda: api.client.get("/v1/users/me", headers=auth).status_code
                          == 200, 15, "reads to work again with FerretDB back")
        assert back
        assert api.client.get("/v1/users/me", headers=auth).json()["name"] == "Ada"


def test_a_profile_change_on_one_instance_is_read_on_another(authnode_env: AuthnodeEnv,
                                                             smtp: SmtpRecorder) -> None:
    with running(authnode_env, "all") as a, running(authnode_env, "api") as b:
        email, _ = register_verified(a.client, smtp, name="Ada")
        auth = bearer(login(b.client, email)["access_token"])
        before = b.client.get("/v1/users/me", headers=auth)  # B's read fills the cache
        assert before.json()["name"] == "Ada"

        changed = a.client.patch("/v1/users/me", headers=auth, json={"name": "Ada Lovelace"})
        assert changed.status_code == 200, changed.text
        after = b.client.get("/v1/users/me", headers=auth)
        assert after.json()["name"] == "Ada Lovelace"
        assert after.headers["ETag"] != before.headers["ETag"]
        stale = b.client.get("/v1/users/me", headers={**auth,
                                                      "If-None-Match": before.headers["ETag"]})
        assert stale.status_code == 200


# --------------------------------------------------------------------------- online users


def test_online_users_are_counted_across_instances(authnode_env: AuthnodeEnv,
                                                   smtp: SmtpRecorder) -> None:
    """The Redis data set is flushed before each test: the count is exactly the users
    who made authenticated requests here."""
    with running(authnode_env, "all") as a, running(authnode_env, "api") as b:
        tokens = []
        for index in range(5):
            client = (a.client, b.client)[index % 2]
            email, _ = register_verified(client, smtp, prefix="online")
            tokens.append(login(client, email)["access_token"])
        for index, token in enumerate(tokens):  # users 0, 2, 4 on A; 1, 3 on B
            client = (a.client, b.client)[index % 2]
            assert client.get("/v1/users/me", headers=bearer(token)).status_code == 200

        def counts() -> tuple[int, int]:
            return tuple(  # type: ignore[return-value]
                _online(client, tokens[0]) for client in (a.client, b.client))

        wait_until(lambda: counts() == (5, 5), 15, lambda: f"5 online on both: {counts()}")


def _online(client: httpx.Client, token: str) -> int:
    response = client.get("/v1/stats/online", headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window_seconds"] == 300
    return int(body["online"])


# --------------------------------------------------------------------------- budget


def test_startup_logs_the_connection_budget_and_warns(authnode_env: AuthnodeEnv) -> None:
    """``--workers 2``: the first API process logs the budget of the whole instance (two
    API processes and a worker); 3 x 60 + 3 PostgreSQL connections (the worker's LISTEN
    for the email, maintenance and webhooks queues) is far over 25 % of what the test
    server (max_connections 200) has free."""
    greedy = authnode_env.with_overrides(POSTGRES_POOL_SIZE="60")
    with running(greedy, "api", workers=2) as api:
        def logged() -> list[dict[str, object]]:
            lines = [json.loads(line) for line in api.logs().splitlines()
                     if line.startswith("{") and '"authnode.budget"' in line]
            return lines if len(lines) >= 2 else []

        lines = wait_until(logged, 20, lambda: f"the budget in the log:\n{api.logs()}")
        infos = [line for line in lines if line["level"] == "info"]
        warnings = [line for line in lines if line["level"] == "warning"]
        assert len(infos) == 1  # one child only logs it
        assert "2 API processes + 1 worker process" in str(infos[0]["message"])
        assert len(warnings) == 1, warnings
        assert "183 postgresql connections" in str(warnings[0]["message"])
        assert "CONNECTION_SHARE_WARN_PERCENT=25%" in str(warnings[0]["message"])
