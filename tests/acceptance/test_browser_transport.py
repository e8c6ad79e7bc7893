"""Browsers over HTTP against the real binary: the refresh token in an HttpOnly cookie
(attributes exact), rotated by a refresh that the cookie authenticates, refused without an
allowed origin (CSRF), reuse detection through cookies, logout clearing it, and the CORS
answers for an allowed and a foreign origin."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import httpx

from tests.acceptance.test_accounts_support import (
    PASSWORD,
    assert_error,
    bearer,
    describe,
    register_verified,
    running,
)
from tests.harness import AuthnodeEnv
from tests.services import SmtpRecorder

PUBLIC = "http://auth.example.test"  # PUBLIC_URL of the acceptance environment
APP = "https://app.example.com"
COOKIE = "__Host-authnode_refresh"


def _set_cookie(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """The refresh cookie a response sets: its value and attributes, as a browser reads."""
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    raw = headers[0]
    parsed = SimpleCookie()
    parsed.load(raw)
    morsel = parsed[COOKIE]
    flags = {part.strip().lower() for part in raw.split(";")}
    return morsel.value, {"max-age": morsel["max-age"], "path": morsel["path"],
                          "samesite": morsel["samesite"], "secure": "secure" in flags,
                          "httponly": "httponly" in flags, "domain": morsel["domain"]}


def _refresh(client: httpx.Client, cookie: str, **headers: str) -> httpx.Response:
    return client.post("/v1/auth/refresh", json={},
                       headers={"Cookie": f"{COOKIE}={cookie}", **headers})


def test_cookie_transport_rotation_csrf_and_logout(authnode_env: AuthnodeEnv,
                                                   smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(REFRESH_REUSE_GRACE_S="0", CORS_ALLOWED_ORIGINS=APP)
    with running(env, "all") as process:
        client = process.client
        email, _ = register_verified(client, smtp)
        response = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD,
                                                       "transport": "cookie"})
        assert response.status_code == 200, describe(response)
        body = response.json()
        assert "refresh_token" not in body and body["token_type"] == "Bearer"
        first, attributes = _set_cookie(response)
        assert attributes == {"max-age": str(30 * 86400), "path": "/", "samesite": "Lax",
                              "secure": True, "httponly": True, "domain": ""}
        assert len(first) >= 43

        # CSRF: the cookie alone, without an allowed origin, does nothing.
        for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"},
                        {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                        {"Origin": "null", "Sec-Fetch-Site": "cross-site"}):
            assert_error(_refresh(client, first, **headers), 403, "csrf_failed")
        # From PUBLIC_URL's page, an allowed app, or a same-origin fetch without Origin.
        rotated = _refresh(client, first, Origin=PUBLIC)
        assert rotated.status_code == 200, describe(rotated)
        assert "refresh_token" not in rotated.json()
        second, _ = _set_cookie(rotated)
        assert second != first
        third, _ = _set_cookie(_refresh(client, second, Origin=APP))
        fourth, _ = _set_cookie(_refresh(client, third, **{"Sec-Fetch-Site": "same-origin"}))

        # Reuse of a spent cookie ends the session, for the current cookie too.
        assert_error(_refresh(client, second, Origin=PUBLIC), 401, "invalid_token")
        assert_error(_refresh(client, fourth, Origin=PUBLIC), 401, "invalid_token")
        assert_error(client.post("/v1/auth/refresh", json={}, headers={"Origin": PUBLIC}),
                     401, "invalid_token")

        # Logout clears the cookie.
        again = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD,
                                                    "transport": "cookie"})
        cookie, _ = _set_cookie(again)
        out = client.post("/v1/auth/logout", headers=bearer(again.json()["access_token"]))
        assert out.status_code == 204, describe(out)
        cleared, attributes = _set_cookie(out)
        assert cleared == "" and attributes["max-age"] == "0"
        assert_error(_refresh(client, cookie, Origin=PUBLIC), 401, "invalid_token")

        # A body token still works as before, and needs no origin.
        plain = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert plain.status_code == 200 and "set-cookie" not in plain.headers
        assert client.post("/v1/auth/refresh", json={
            "refresh_token": plain.json()["refresh_token"]}).status_code == 200


def test_cors_answers_allowed_origins_only(authnode_env: AuthnodeEnv) -> None:
    env = authnode_env.with_overrides(CORS_ALLOWED_ORIGINS=f"{APP},http://localhost:5173")
    with running(env, "api") as process:
        client = process.client
        preflight = client.options("/v1/users/me", headers={
            "Origin": APP, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200, describe(preflight)
        headers = preflight.headers
        assert headers["access-control-allow-origin"] == APP
        assert headers["access-control-allow-credentials"] == "true"
        assert headers["access-control-max-age"] == "600"
        assert {m.strip() for m in headers["access-control-allow-methods"].split(",")} >= {
            "GET", "POST", "PATCH", "DELETE"}
        assert "authorization" in headers["access-control-allow-headers"].lower()

        foreign = client.options("/v1/users/me", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in foreign.headers
        simple = client.get("/healthz", headers={"Origin": APP})
        assert simple.headers["access-control-allow-origin"] == APP
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        assert "access-control-allow-origin" not in client.get(
            "/healthz", headers={"Origin": "https://evil.example"}).headers


def test_a_wildcard_origin_is_refused_at_startup(authnode_env: AuthnodeEnv) -> None:
    result = authnode_env.with_overrides(CORS_ALLOWED_ORIGINS="*").run("config", "show")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "CORS_ALLOWED_ORIGINS" in result.stderr
