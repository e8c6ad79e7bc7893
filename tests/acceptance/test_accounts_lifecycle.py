"""The whole life of an account, driven over HTTP against the real ``authnode serve``:
register -> email -> verify -> login -> me -> refresh -> logout, the profile, and
self-deletion. Once with ``--role all``, once with the api and the worker as two processes.
"""

from __future__ import annotations

import httpx

from tests.acceptance.test_accounts_support import (
    ACCEPTED,
    PASSWORD,
    assert_access_refused,
    assert_access_works,
    assert_error,
    assert_refresh_refused,
    assert_user,
    bearer,
    describe,
    login,
    refresh,
    register,
    register_verified,
    running,
    verification_token,
    verify,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess, unique_email
from tests.services import SmtpRecorder


def run_account_lifecycle(client: httpx.Client, smtp: SmtpRecorder) -> None:
    email = unique_email("life")

    # Register: 202, and the worker emails a link to /verify-email.
    register(client, email, name="Ada")
    token = verification_token(smtp, email)

    # Before verification there is no account yet, only a pending registration.
    assert_error(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
                 401, "invalid_credentials")
    assert_error(client.post("/v1/auth/login",
                             json={"email": email, "password": PASSWORD + "-wrong"}),
                 401, "invalid_credentials")

    user = verify(client, token)
    assert_user(user, email=email, verified=True)
    assert user["name"] == "Ada"
    # A verification link works once.
    assert_error(client.post("/v1/auth/verify-email", json={"token": token}),
                 400, "invalid_token")

    assert_error(client.post("/v1/auth/login",
                             json={"email": email, "password": PASSWORD + "-wrong"}),
                 401, "invalid_credentials")
    tokens = login(client, email)
    assert tokens["user"] == user

    # GET /v1/users/me: the user, an ETag, no caching by intermediaries; 304 on a match.
    me = client.get("/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, describe(me)
    assert me.json() == {**user, "mfa": {"totp": False, "webauthn": 0,
                                         "recovery_codes_left": 0}}
    assert me.headers.get("cache-control") == "no-store", me.headers
    etag = me.headers.get("etag")
    assert etag, me.headers
    again = client.get("/v1/users/me",
                       headers={**bearer(tokens["access_token"]), "If-None-Match": etag})
    assert again.status_code == 304, describe(again)
    assert again.content == b""
    assert again.headers.get("etag") == etag
    other_tag = client.get("/v1/users/me",
                           headers={**bearer(tokens["access_token"]),
                                    "If-None-Match": '"not-the-current-tag"'})
    assert other_tag.status_code == 200, describe(other_tag)

    # Refresh: a new refresh token and a new access token, which works.
    renewed = refresh(client, tokens["refresh_token"])
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert renewed["access_token"] != tokens["access_token"]
    assert renewed["user"] == user
    assert_access_works(client, renewed["access_token"], "access token from a refresh")

    # Logout: 204, and every token of the session is refused at once.
    out = client.post("/v1/auth/logout", headers=bearer(renewed["access_token"]))
    assert out.status_code == 204, describe(out)
    assert out.content == b""
    assert_access_refused(client, renewed["access_token"], "after logout")
    assert_access_refused(client, tokens["access_token"], "older token of a logged-out session")
    assert_refresh_refused(client, renewed["refresh_token"], "after logout")
    again_out = client.post("/v1/auth/logout", headers=bearer(renewed["access_token"]))
    assert_error(again_out, 401, "invalid_token")

    # The account itself is fine: a new login works.
    assert_access_works(client, login(client, email)["access_token"], "new login after logout")

    check_profile_name(client, smtp)


def test_account_lifecycle(authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    run_account_lifecycle(authnode.client, smtp)


def test_account_lifecycle_with_separate_api_and_worker(authnode_env: AuthnodeEnv,
                                                        smtp: SmtpRecorder) -> None:
    """The API only queues email jobs; a separate worker process sends them."""
    with running(authnode_env, "api") as api:
        # With no worker running the job waits in the queue; the worker sends it later.
        early = unique_email("queued")
        register(api.client, early)
        with running(authnode_env, "worker"):
            verify(api.client, verification_token(smtp, early))
            run_account_lifecycle(api.client, smtp)
        assert_access_works(api.client, login(api.client, early)["access_token"],
                            "login after the worker stopped")


def check_profile_name(client: httpx.Client, smtp: SmtpRecorder) -> None:
    """PATCH /v1/users/me: names are trimmed, bounded, free of control characters."""
    email, user = register_verified(client, smtp, prefix="named")
    assert user["name"] is None
    access = login(client, email)["access_token"]
    etag = client.get("/v1/users/me", headers=bearer(access)).headers["etag"]

    renamed = client.patch("/v1/users/me", json={"name": "  Grace Hopper "},
                           headers=bearer(access))
    assert renamed.status_code == 200, describe(renamed)
    assert renamed.json() == {**user, "name": "Grace Hopper"}
    assert renamed.headers.get("cache-control") == "no-store"
    me = client.get("/v1/users/me", headers={**bearer(access), "If-None-Match": etag})
    assert me.status_code == 200, f"the old ETag still matches after a rename: {describe(me)}"
    assert me.json()["name"] == "Grace Hopper"
    assert me.headers["etag"] != etag

    unicode_name = client.patch("/v1/users/me", json={"name": "Zoë Ångström 李"},
                                headers=bearer(access))
    assert unicode_name.status_code == 200, describe(unicode_name)
    assert unicode_name.json()["name"] == "Zoë Ångström 李"

    for bad in ("line\nbreak", "nul\x00byte", "tab\there", "bell\x07", "rtl\u202eoverride",
                "x" * 101):
        refused = client.patch("/v1/users/me", json={"name": bad}, headers=bearer(access))
        assert_error(refused, 422, "invalid_request")
    for wrong_type in (5, ["a"], {"first": "a"}):
        refused = client.patch("/v1/users/me", json={"name": wrong_type},
                               headers=bearer(access))
        assert_error(refused, 422, "invalid_request")
    assert client.get("/v1/users/me", headers=bearer(access)).json()["name"] == "Zoë Ångström 李"

    cleared = client.patch("/v1/users/me", json={"name": None}, headers=bearer(access))
    assert cleared.status_code == 200, describe(cleared)
    assert cleared.json()["name"] is None
    assert client.get("/v1/users/me", headers=bearer(access)).json()["name"] is None

    for header in ("", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt",
                   "Bearer a.b.c", f"Bearer {access}x", f"Token {access}"):
        # The 401 comes before the body is read; hypercorn then closes the connection
        # without saying so ("Connection: close"), so do not reuse it (see the report).
        headers = {"Authorization": header, "Connection": "close"} if header \
            else {"Connection": "close"}
        for method in ("GET", "PATCH"):
            response = client.request(method, "/v1/users/me", json={"name": "Mallory"},
                                      headers=headers)
            assert_error(response, 401, "invalid_token")
            challenge = response.headers.get("www-authenticate", "")
            assert challenge.lower().startswith("bearer"), (header, response.headers)
    assert client.get("/v1/users/me", headers=bearer(access)).json()["name"] is None


def test_self_deletion(authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, user = register_verified(client, smtp, prefix="gone", name="Gone Soon")
    first = login(client, email, user_agent="phone")
    second = login(client, email, user_agent="laptop")

    wrong = client.request("DELETE", "/v1/users/me", json={"password": PASSWORD + "!"},
                           headers=bearer(first["access_token"]))
    assert_error(wrong, 401, "invalid_credentials")
    assert_access_works(client, first["access_token"], "after a refused deletion")

    missing = client.request("DELETE", "/v1/users/me", json={},
                             headers=bearer(first["access_token"]))
    assert_error(missing, 422, "invalid_request")
    unauthenticated = client.request("DELETE", "/v1/users/me", json={"password": PASSWORD},
                                     headers={"Connection": "close"})
    assert_error(unauthenticated, 401, "invalid_token")

    deleted = client.request("DELETE", "/v1/users/me", json={"password": PASSWORD},
                             headers=bearer(first["access_token"]))
    assert deleted.status_code == 204, describe(deleted)
    assert deleted.content == b""

    for tokens, which in ((first, "the deleting session"), (second, "another session")):
        assert_access_refused(client, tokens["access_token"], f"account deleted ({which})")
        assert_refresh_refused(client, tokens["refresh_token"], f"account deleted ({which})")
    assert_error(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
                 401, "invalid_credentials")

    # The address is free again: a fresh account, with a new id, once confirmed.
    response = client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 202, describe(response)
    assert response.json() == ACCEPTED
    assert_error(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
                 401, "invalid_credentials")
    fresh = verify(client, verification_token(smtp, email, count=2))
    assert fresh["email"] == email
    # Ids are random and permanent: an app keyed by the old id sees a stranger.
    assert fresh["id"] != user["id"]
    assert fresh["created_at"] > user["created_at"]
    assert fresh["name"] is None and user["name"] == "Gone Soon"
    tokens = login(client, email)
    assert assert_access_works(client, tokens["access_token"], "the new account") == fresh
    assert_access_refused(client, first["access_token"], "old account's token, after re-register")
