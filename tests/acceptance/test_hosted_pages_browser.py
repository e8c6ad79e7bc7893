"""The hosted pages in headless Chromium (Playwright + Debian's chromium), as a person uses
them: create an account on /register, confirm the emailed link, sign in on /login, land on
/account, see the session, sign out another device, change the name, add a passkey and sign
in with it, turn on an authenticator app from its QR code and pass the second step. Then a
browser app on another origin calling the API with ``credentials: "include"``: allowed from
an origin in ``CORS_ALLOWED_ORIGINS``; from any other, CORS hides the answer and a forged
form post is refused (403 ``csrf_failed``).

Every page is photographed into the test's output folder (its path is printed, so a failed
run shows where); ``make screenshots`` writes them to ``build/screenshots`` instead.
One Redis mode: what the pages add over the API is not Redis-specific.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Browser, Page

from tests.acceptance.test_accounts_support import (
    PASSWORD,
    VERIFY_SUBJECT,
    assert_access_refused,
    login,
    register_verified,
    running,
    wait_mail,
)
from tests.acceptance.test_pages_browser import PAGE_TIMEOUT_MS, heading, launched_chromium
from tests.harness import AuthnodeEnv, unique_email
from tests.services import SmtpRecorder, free_port

pytestmark = pytest.mark.parametrize("redis_target", ["single"], indirect=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


class Camera:
    """Screenshots of each page, numbered in the order taken."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)
        print(f"screenshots: {folder}")

    def shoot(self, page: Page, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)


@pytest.fixture
def camera(tmp_path: Path, request: pytest.FixtureRequest) -> Camera:
    chosen = os.environ.get("AUTHNODE_SCREENSHOT_DIR")
    base = Path(chosen) if chosen else tmp_path / "screenshots"
    return Camera(base / request.node.name.split("[")[0])


def _authenticator(page: Page) -> dict[str, Any]:
    """A virtual platform authenticator that verifies the user (a fingerprint reader)."""
    devtools = page.context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    added = devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})
    return {"devtools": devtools, "id": added["authenticatorId"]}


def _submit(page: Page, button: str) -> int:
    """Press a form's button; the status of the page it leads to."""
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=button, exact=True).click()
    response = navigation.value
    assert response is not None
    return response.status


def test_a_person_uses_the_hosted_pages(authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
                                        browser: Browser, camera: Camera) -> None:
    port = free_port()
    origin = f"http://localhost:{port}"  # a secure context and a valid passkey RP ID
    env = authnode_env.with_overrides(PUBLIC_URL=origin)
    with running(env, "all", port=port) as process:
        client = process.client
        page = browser.new_context().new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        virtual = _authenticator(page)
        email = unique_email("pages")

        # Create an account.
        page.goto(f"{origin}/register")
        camera.shoot(page, "register")
        page.keyboard.press("Tab")  # the keyboard reaches the first field first
        assert page.evaluate("document.activeElement.id") == "email"
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Your name (optional)").fill("Grace")
        page.get_by_label("Password (8 to 128 characters)").fill(PASSWORD)
        assert _submit(page, "Create account") == 200
        assert heading(page) == "Check your email"
        camera.shoot(page, "register-sent")

        # Confirm the emailed link: the page's button, not the GET, confirms.
        link = next(u for u in wait_mail(smtp, email, VERIFY_SUBJECT).links()
                    if "/verify-email?token=" in u)
        page.goto(link)
        camera.shoot(page, "confirm")
        assert _submit(page, "Confirm my email address") == 200
        assert heading(page) == "Email address verified"

        # Sign in; back to the page asked for.
        page.goto(f"{origin}/account")
        assert page.url == f"{origin}/login?return_to=%2Faccount"
        camera.shoot(page, "login")
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        assert _submit(page, "Sign in") == 200
        assert page.url == f"{origin}/account"
        assert heading(page) == "Your account"
        assert "This device" in page.locator("main").inner_text()
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert cookies["authnode_refresh"]["httpOnly"] and cookies["authnode_access"]["httpOnly"]
        assert page.evaluate("document.cookie") == ""  # no script can read them
        camera.shoot(page, "account")

        # Another device's session, signed out from here.
        other = login(client, email, user_agent="OtherDevice/1.0")
        page.reload()
        row = page.locator("tr", has_text="OtherDevice/1.0")
        with page.expect_navigation():
            row.get_by_role("button", name="Sign out").click()
        assert "That session is signed out." in page.get_by_role("status").inner_text()
        assert page.locator("tr", has_text="OtherDevice/1.0").count() == 0
        assert_access_refused(client, other["access_token"], "signed out on /account")

        # Change the name.
        page.get_by_label("Name shown to others").fill("Grace Hopper")
        assert _submit(page, "Save name") == 200
        assert page.get_by_label("Name shown to others").input_value() == "Grace Hopper"

        # Add a passkey (the page's script), then sign in with it alone.
        page.get_by_label("Name for a new passkey").fill("This laptop")
        with page.expect_navigation(url=re.compile(r".*done=passkey-added")):
            page.get_by_role("button", name="Add a passkey").click()
        assert "This laptop" in page.locator("main").inner_text()
        stored = virtual["devtools"].send("WebAuthn.getCredentials",
                                          {"authenticatorId": virtual["id"]})
        assert len(stored["credentials"]) == 1
        camera.shoot(page, "account-passkey")
        assert _submit(page, "Sign out") == 200
        assert page.url == f"{origin}/login?signed_out=out"
        with page.expect_navigation(url=f"{origin}/account"):
            page.get_by_role("button", name="Sign in with a passkey").click()
        assert heading(page) == "Your account"

        # Turn on an authenticator app from the page's QR code and key.
        assert _submit(page, "Set up an authenticator app") == 200
        assert page.locator("figure svg").count() == 1
        camera.shoot(page, "totp-setup")
        secret = page.locator("main code").inner_text().strip()
        page.get_by_label("The 6-digit code the app shows now").fill(pyotp.TOTP(secret).now())
        assert _submit(page, "Turn on") == 200
        codes = page.locator("main li code").all_inner_texts()
        assert len(codes) == 10
        camera.shoot(page, "totp-codes")

        # Signing in with the password now takes the second step.
        page.goto(f"{origin}/account")
        assert _submit(page, "Sign out") == 200
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        assert _submit(page, "Sign in") == 200
        assert heading(page) == "Second step"
        camera.shoot(page, "second-step")
        page.get_by_label("Code from your authenticator app, or a recovery code").fill("000000")
        assert _submit(page, "Continue") == 400
        assert page.get_by_role("alert").first.inner_text().strip()
        page.get_by_label("Code from your authenticator app, or a recovery code").fill(codes[0])
        assert _submit(page, "Continue") == 200
        assert page.url == f"{origin}/account"
        assert "Recovery codes left: 9" in page.locator("main").inner_text()

        # Forgot password page answers the same for any address.
        page.goto(f"{origin}/forgot-password")
        camera.shoot(page, "forgot")
        page.get_by_label("Email address").fill(email)
        assert _submit(page, "Email me a link") == 200
        assert heading(page) == "Check your email"


APP_PAGE = "<!doctype html><title>app</title><p>app</p>"
CALL_API_JS = """async ({api, email, password}) => {
  const json = {"Content-Type": "application/json"};
  const login = await fetch(api + "/v1/auth/login", {method: "POST", credentials: "include",
      headers: json, body: JSON.stringify({email, password, transport: "cookie"})});
  const refresh = await fetch(api + "/v1/auth/refresh", {method: "POST",
      credentials: "include", headers: json, body: "{}"});
  const tokens = await refresh.json();
  const me = await fetch(api + "/v1/users/me", {credentials: "include",
      headers: {"Authorization": "Bearer " + tokens.access_token}});
  return [login.status, refresh.status, me.status, (await me.json()).email,
          "refresh_token" in tokens];
}"""
FOREIGN_FETCH_JS = """async ({api}) => {
  try {
    const answer = await fetch(api + "/v1/auth/refresh", {method: "POST",
        credentials: "include", headers: {"Content-Type": "application/json"}, body: "{}"});
    return "read " + answer.status;
  } catch (error) {
    return "blocked";
  }
}"""
FORGED_FORM_JS = """({api}) => {
  const form = document.createElement("form");
  form.method = "post";
  form.action = api + "/account/name";
  const name = document.createElement("input");
  name.name = "name";
  name.value = "pwned";
  form.appendChild(name);
  document.body.appendChild(form);
  form.submit();
}"""


class _BlankPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = APP_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _site() -> Iterator[str]:
    """A real loopback web server for another origin's page. (A page that Playwright
    answers itself is not in the loopback address space, and Chromium's local-network
    rules keep it from calling a loopback API at all.)"""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BlankPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _page_at(browser: Browser, url: str) -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(url)
    return page


def test_a_browser_app_on_another_origin(authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
                                         browser: Browser, camera: Camera) -> None:
    port = free_port()
    api = f"http://localhost:{port}"
    with _site() as app, _site() as foreign, running(authnode_env.with_overrides(
            PUBLIC_URL=api, CORS_ALLOWED_ORIGINS=app), "all", port=port) as process:
        email, _ = register_verified(process.client, smtp, prefix="crossorigin")

        allowed = _page_at(browser, f"{app}/index.html")
        statuses = allowed.evaluate(CALL_API_JS, {"api": api, "email": email,
                                                  "password": PASSWORD})
        assert statuses == [200, 200, 200, email, False], statuses

        # The same calls from an origin that is not allowed: CORS keeps the answer from
        # the page's script (the preflight fails, so the refresh is never even sent)...
        evil = _page_at(browser, f"{foreign}/index.html")
        evil.context.add_cookies(allowed.context.cookies())  # the victim's signed-in browser
        assert evil.evaluate(FOREIGN_FETCH_JS, {"api": api}) == "blocked"
        # ...and a form it posts, which needs no preflight, is refused by the origin check.
        with evil.expect_navigation() as navigation:
            evil.evaluate(FORGED_FORM_JS, {"api": api})
        response = navigation.value
        assert response is not None and response.status == 403
        assert '"csrf_failed"' in evil.content()
        camera.shoot(evil, "forged-form")

        # Nothing changed: the name is still unset.
        tokens = login(process.client, email)
        me = process.client.get("/v1/users/me",
                                headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.json()["name"] is None
