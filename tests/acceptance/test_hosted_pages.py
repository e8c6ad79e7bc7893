"""The hosted pages over HTTP against the real binary, as a browser would use them: the
form sign-in sets exactly these cookies and redirects only inside the allowlist, the
account page works from the cookies (and renews them once the access cookie is gone),
every action is a form post that another origin cannot make, and the headers keep
scripts, frames and referrers out. The session flow runs in both Redis modes (the page
session is the Redis revocation check); the rest adds nothing Redis-specific.
The Chromium tests are in test_hosted_pages_browser.py.
"""

from __future__ import annotations

import re
from html import unescape
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest

from tests.acceptance.test_accounts_support import (
    PASSWORD,
    assert_access_refused,
    assert_error,
    describe,
    login,
    register_verified,
    running,
)
from tests.harness import AuthnodeEnv
from tests.services import SmtpRecorder

PUBLIC = "http://auth.example.test"  # PUBLIC_URL of the acceptance environment
REFRESH = "__Host-authnode_refresh"
ACCESS = "__Host-authnode_access"
APP = "https://app.example.com"


class CookieJar:
    """A browser's cookies for PUBLIC_URL, kept by hand: httpx would not send Secure
    cookies over the test's plain-http connection. Form posts carry our Origin."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}
        self.last_set: dict[str, dict[str, Any]] = {}

    def _keep(self, response: httpx.Response) -> httpx.Response:
        self.last_set = {}
        for raw in response.headers.get_list("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(raw)
            for name, morsel in parsed.items():
                flags = {part.strip().lower() for part in raw.split(";")}
                self.last_set[name] = {
                    "value": morsel.value, "max-age": morsel["max-age"],
                    "path": morsel["path"], "samesite": morsel["samesite"],
                    "secure": "secure" in flags, "httponly": "httponly" in flags}
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return response

    def header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def get(self, path: str, **params: str) -> httpx.Response:
        return self._keep(self.client.get(path, params=params, headers=self.header()))

    def post(self, path: str, data: dict[str, str] | None = None, *,
             origin: str | None = PUBLIC) -> httpx.Response:
        headers = self.header()
        if origin is not None:
            headers["Origin"] = origin
        return self._keep(self.client.post(path, data=data or {}, headers=headers))


def _sign_in(jar: CookieJar, email: str, return_to: str = "") -> httpx.Response:
    response = jar.post("/login", {"email": email, "password": PASSWORD,
                                   "return_to": return_to})
    assert response.status_code == 303, describe(response)
    return response


def form_actions(html: str) -> list[str]:
    return [unescape(a) for a in re.findall(r'<form method="post" action="([^"]+)"', html)]


def test_sign_in_cookies_account_page_and_sign_out(authnode_env: AuthnodeEnv,
                                                   smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(ACCESS_TOKEN_TTL="60")
    with running(env, "all") as process:
        client = process.client
        email, _ = register_verified(client, smtp, prefix="hosted")
        jar = CookieJar(client)

        # Not signed in: the account page sends the browser to /login, coming back after.
        away = jar.get("/account")
        assert away.status_code == 303, describe(away)
        assert away.headers["location"] == f"{PUBLIC}/login?return_to=%2Faccount"

        wrong = jar.post("/login", {"email": email, "password": "not the password"})
        assert wrong.status_code == 401, describe(wrong)
        assert "The email or password is incorrect." in wrong.text
        assert f'value="{email}"' in wrong.text  # the form again, the address kept
        assert not jar.cookies

        signed_in = _sign_in(jar, email, "/account")
        assert signed_in.headers["location"] == f"{PUBLIC}/account"
        cookies = jar.last_set
        assert set(cookies) == {REFRESH, ACCESS}, cookies
        expected = {"path": "/", "samesite": "Lax", "secure": True, "httponly": True}
        assert {k: cookies[REFRESH][k] for k in expected} == expected
        assert {k: cookies[ACCESS][k] for k in expected} == expected
        assert cookies[REFRESH]["max-age"] == str(30 * 86400)
        assert cookies[ACCESS]["max-age"] == "60"  # ACCESS_TOKEN_TTL

        # Another session of the same user, from the JSON API.
        other = login(client, email, user_agent="OtherDevice/1.0")

        page = jar.get("/account")
        assert page.status_code == 200, describe(page)
        assert email in page.text and "OtherDevice/1.0" in page.text
        assert "This device" in page.text
        assert "set-cookie" not in page.headers  # the access cookie was enough

        renamed = jar.post("/account/name", {"name": "Ada <b>Lovelace</b>"})
        assert renamed.status_code == 303
        assert renamed.headers["location"] == f"{PUBLIC}/account?done=name"
        page = jar.get("/account", done="name")
        assert "Your name is saved." in page.text
        assert 'value="Ada &lt;b&gt;Lovelace&lt;/b&gt;"' in page.text  # escaped, not markup

        # Sign the other session out from the page: its tokens stop working at once.
        ends = [a for a in form_actions(page.text) if a.endswith("/end")]
        assert ends == [f"{PUBLIC}/account/sessions/{_sid(other)}/end"], ends
        ended = jar.post(ends[0].removeprefix(PUBLIC))
        assert ended.status_code == 303, describe(ended)
        assert_access_refused(client, other["access_token"], "signed out from the page")

        # Without the access cookie the refresh cookie rotates, and both are renewed.
        old_refresh = jar.cookies[REFRESH]
        del jar.cookies[ACCESS]
        page = jar.get("/account")
        assert page.status_code == 200, describe(page)
        assert set(jar.last_set) == {REFRESH, ACCESS}
        assert jar.cookies[REFRESH] != old_refresh

        # Sign out: cookies cleared; the old refresh cookie no longer signs anyone in.
        refresh_before = jar.cookies[REFRESH]
        out = jar.post("/logout")
        assert out.status_code == 303
        assert out.headers["location"] == f"{PUBLIC}/login?signed_out=out"
        assert {n: c["max-age"] for n, c in jar.last_set.items()} == {REFRESH: "0", ACCESS: "0"}
        jar.cookies[REFRESH] = refresh_before
        assert jar.get("/account").status_code == 303
        assert "You are signed out." in jar.get("/login", signed_out="out").text


def _sid(tokens: dict[str, Any]) -> str:
    import jwt  # the claims only; the service checked the signature
    sid: str = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    return sid


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_return_to_never_leaves_the_allowlist(authnode_env: AuthnodeEnv,
                                              smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(RETURN_URL_ALLOWLIST=f"{APP}/after")
    with running(env, "all") as process:
        email, _ = register_verified(process.client, smtp, prefix="return")
        jar = CookieJar(process.client)
        for raw, expected in [
            (f"{APP}/after?step=2", f"{APP}/after?step=2"),
            ("/account?done=name", f"{PUBLIC}/account?done=name"),
            ("//evil.example", f"{PUBLIC}/account"),
            ("https:evil.example", f"{PUBLIC}/account"),
            ("/\\evil.example", f"{PUBLIC}/account"),
            ("%2F%2Fevil.example", f"{PUBLIC}/account"),
            (f"{APP}.evil.example/after", f"{PUBLIC}/account"),
            (f"https://evil.example/{APP}/after", f"{PUBLIC}/account"),
        ]:
            jar.cookies.clear()
            assert _sign_in(jar, email, raw).headers["location"] == expected, raw
        # The passkey button's destination is checked the same way, on the server.
        page = jar.get("/login", return_to="//evil.example")
        assert f'data-next="{PUBLIC}/account"' in page.text


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
@pytest.mark.parametrize("path", ["/login", "/register", "/forgot-password"])
def test_pages_forbid_inline_scripts_frames_and_referrers(authnode_env: AuthnodeEnv,
                                                          path: str) -> None:
    with running(authnode_env, "api") as process:
        page = process.client.get(path)
        assert page.status_code == 200, describe(page)
        headers = page.headers
        policy = headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["default-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["form-action"] == PUBLIC
        assert "unsafe-inline" not in directives.get("script-src", "'self'")
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        scripts = re.findall(r"<script([^>]*)>", page.text)
        assert all('src="' in attributes for attributes in scripts), scripts
        for label_for in re.findall(r'<label for="([^"]+)"', page.text):
            assert f'id="{label_for}"' in page.text  # every label names its field
        script = process.client.get("/assets/pages.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_forged_form_posts_are_refused(authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    """A form on another site posting to our pages: 403 csrf_failed, nothing changes."""
    with running(authnode_env, "all") as process:
        client = process.client
        email, _ = register_verified(client, smtp, prefix="forged")
        jar = CookieJar(client)
        # Login CSRF: signing the victim's browser in to the attacker's account.
        assert_error(jar.post("/login", {"email": email, "password": PASSWORD},
                              origin="https://evil.example"), 403, "csrf_failed")
        assert_error(jar.post("/login", {"email": email, "password": PASSWORD},
                              origin=None), 403, "csrf_failed")
        assert not jar.cookies
        # An oversized field is a clear 422, not a 500 or a silent cut.
        assert_error(jar.post("/login", {"email": "a" * 5000, "password": PASSWORD}),
                     422, "invalid_request")
        _sign_in(jar, email)
        for path, data in [("/account/name", {"name": "pwned"}), ("/logout", {}),
                           ("/account/sign-out-everywhere", {}),
                           ("/account/delete", {"password": PASSWORD})]:
            assert_error(jar.post(path, data, origin="https://evil.example"),
                         403, "csrf_failed")
            assert_error(jar.post(path, data, origin="null"), 403, "csrf_failed")
        page = jar.get("/account")
        assert page.status_code == 200 and "pwned" not in page.text


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_delete_account_from_the_page(authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    with running(authnode_env, "all") as process:
        client = process.client
        email, _ = register_verified(client, smtp, prefix="delete")
        jar = CookieJar(client)
        _sign_in(jar, email)
        wrong = jar.post("/account/delete", {"password": "not it at all"})
        assert wrong.status_code == 401, describe(wrong)
        assert email in wrong.text  # the account page again, with the error
        gone = jar.post("/account/delete", {"password": PASSWORD})
        assert gone.status_code == 200 and "Account deleted" in gone.text
        assert {n: c["max-age"] for n, c in jar.last_set.items()} == {REFRESH: "0", ACCESS: "0"}
        again = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert_error(again, 401, "invalid_credentials")
