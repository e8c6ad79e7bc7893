"""Hostile input 11: ending sessions and refreshing them, against the real binary.

* A logout whose Redis mark is lost afterwards (a Redis Cluster failover drops
  acknowledged writes; a single Redis restarted without persistence forgets them) brings
  the access token back to life. The client retries the logout: the retry must not
  answer 204 while the access token still works -- it writes the mark again. The same for
  logout-all, for every session it ended.
* Anyone can send ``POST /v1/auth/refresh`` with a string shaped like a refresh token.
  Such a token -- of an unknown session, or a made-up secret for a real session id -- is
  refused with 401 and writes nothing to MongoDB: the ``spend_guards`` collection does not
  grow. The real session keeps working.
* Refreshes are limited per client address (``REFRESH_IP_LIMIT``): past the limit,
  429 ``rate_limited`` with ``Retry-After``, whatever token is sent.

Both Redis modes. (A logout or password change cut in half by a store failure:
tests/faults/test_half_done_logout.py.)
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import httpx
import pymongo

from authnode.repositories.spend_guards import COLLECTION as GUARDS
from authnode.shared import redis_keys
from tests.acceptance.test_accounts_support import (
    assert_access_refused,
    assert_access_works,
    assert_error,
    assert_refresh_refused,
    bearer,
    describe,
    login,
    refresh,
    register_verified,
    running,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import RedisCluster, RedisTarget, SmtpRecorder

MADE_UP_TOKENS = 40
LIMIT_COUNT = 5


def _claims(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(
        payload + "=" * (-len(payload) % 4)))
    return claims


def _lose_marks(target: RedisTarget, *access_tokens: str) -> None:
    """Delete the revocation marks of these tokens' sessions, as a failover would."""
    for claims in map(_claims, access_tokens):
        key = redis_keys.revoked_session(claims["sub"], claims["sid"])
        server = target.server
        node = server.primary_for_key(key) if isinstance(server, RedisCluster) else server
        assert node is not None
        client = node.client()
        try:
            assert client.delete(key) == 1, f"no revocation mark at {key}"
        finally:
            client.close()


def test_a_retried_logout_writes_a_lost_mark_again(authnode: AuthnodeProcess,
                                                   redis_target: RedisTarget,
                                                   smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp, prefix="lostmark")
    session = login(client, email)
    headers = bearer(session["access_token"])
    assert client.post("/v1/auth/logout", headers=headers).status_code == 204
    assert_access_refused(client, session["access_token"], "after logout")

    _lose_marks(redis_target, session["access_token"])
    assert_access_works(client, session["access_token"], "mark lost (the failure)")
    retry = client.post("/v1/auth/logout", headers=headers)
    assert retry.status_code == 204, describe(retry)
    assert_access_refused(client, session["access_token"],
                          "BUG authnode/accounts/authentication.py::end_session: a retried "
                          "logout answered 204 but did not write the lost mark again")
    assert_refresh_refused(client, session["refresh_token"], "after the retried logout")


def test_a_retried_logout_all_writes_lost_marks_again(authnode: AuthnodeProcess,
                                                      redis_target: RedisTarget,
                                                      smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp, prefix="lostmarks")
    here, there = login(client, email, user_agent="here"), login(client, email,
                                                                  user_agent="there")
    assert client.post("/v1/auth/logout-all",
                       headers=bearer(here["access_token"])).status_code == 204

    _lose_marks(redis_target, here["access_token"], there["access_token"])
    retry = client.post("/v1/auth/logout-all", headers=bearer(here["access_token"]))
    assert retry.status_code == 204, describe(retry)
    for name, tokens in (("here", here), ("there", there)):
        assert_access_refused(client, tokens["access_token"],
                              f"{name}: a retried logout-all answered 204 without writing the "
                              "lost mark again")
        assert_refresh_refused(client, tokens["refresh_token"], f"{name}, after logout-all")


def _guard_count(env: AuthnodeEnv) -> int:
    mongo: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(env.variables["MONGODB_URI"]) as mongo:
        return mongo.get_default_database()[GUARDS].count_documents({})


def _made_up(session_id: str) -> str:
    return f"rt_{session_id}.{secrets.token_urlsafe(32)}"


def test_made_up_refresh_tokens_write_nothing(authnode: AuthnodeProcess,
                                              authnode_env: AuthnodeEnv,
                                              smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp, prefix="guards")
    session = login(client, email)
    real_id = session["refresh_token"][len("rt_"):].split(".")[0]
    before = _guard_count(authnode_env)

    for n in range(MADE_UP_TOKENS):
        session_id = real_id if n % 2 else secrets.token_urlsafe(18)
        response = client.post("/v1/auth/refresh", json={"refresh_token": _made_up(session_id)})
        assert_error(response, 401, "invalid_token")
    after = _guard_count(authnode_env)
    print(f"spend guards: {before} before, {after} after {MADE_UP_TOKENS} made-up tokens")
    assert after == before, (
        f"BUG authnode/repositories/sessions.py::claim_rotation: {after - before} spend-guard "
        f"documents written for {MADE_UP_TOKENS} made-up refresh tokens")

    renewed = refresh(client, session["refresh_token"])
    assert_access_works(client, renewed["access_token"], "the real session, refreshed")
    assert _guard_count(authnode_env) == before + 1, "the real refresh claims one guard"


def _limited(response: httpx.Response) -> None:
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60, response.headers


def test_refresh_is_limited_per_client_address(authnode_env: AuthnodeEnv,
                                               smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(REFRESH_IP_LIMIT=f"{LIMIT_COUNT}/1m")
    with running(env) as process:
        client = process.client
        email, _ = register_verified(client, smtp, prefix="refreshlimit")
        tokens = login(client, email)
        for _ in range(LIMIT_COUNT - 1):
            tokens = refresh(client, tokens["refresh_token"])
        assert_error(client.post("/v1/auth/refresh", json={"refresh_token": _made_up("x")}),
                     401, "invalid_token")  # the limit's last request
        _limited(client.post("/v1/auth/refresh", json={"refresh_token": _made_up("y")}))
        _limited(client.post("/v1/auth/refresh",
                             json={"refresh_token": tokens["refresh_token"]}))
        # The refused refresh spent nothing: the token still works once the window ends;
        # meanwhile the access token of the session does.
        assert_access_works(client, tokens["access_token"], "while refreshes are limited")
