"""The pages behind the email links, in a real headless browser (Playwright + Debian's
chromium): confirm an address with the page's button (opening the link alone changes
nothing), then choose a new password through the reset form.

One Redis mode only: the pages add nothing Redis-specific to what the API tests cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Response, sync_playwright

from tests.acceptance.test_accounts_support import (
    NEW_PASSWORD,
    PASSWORD,
    RESET_SUBJECT,
    VERIFY_SUBJECT,
    assert_access_works,
    assert_error,
    login,
    register,
    running,
    wait_mail,
)
from tests.harness import AuthnodeEnv, unique_email
from tests.services import SmtpRecorder, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PAGE_TIMEOUT_MS = 20_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


def launched_chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, through Playwright; closed after."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def assert_page_headers(response: Response | None, status: int) -> None:
    assert response is not None
    assert response.status == status, f"{response.url} -> {response.status}"
    headers = response.headers  # lower-cased names
    assert headers.get("referrer-policy") == "no-referrer", headers
    assert headers.get("cache-control") == "no-store", headers
    assert headers.get("content-type", "").startswith("text/html"), headers


def heading(page: Page) -> str:
    return page.locator("h1").inner_text().strip()


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_email_link_pages_in_a_browser(authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
                                       browser: Browser) -> None:
    port = free_port()
    env = authnode_env.with_overrides(PUBLIC_URL=f"http://127.0.0.1:{port}")
    with running(env, "all", port=port) as process:
        client = process.client
        email = unique_email("browser")
        register(client, email)
        verify_link = next(link for link in wait_mail(smtp, email, VERIFY_SUBJECT).links()
                           if "/verify-email?token=" in link)
        assert verify_link.startswith(process.url + "/verify-email?")

        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        requested: list[tuple[str, dict[str, str]]] = []
        page.on("request", lambda request: requested.append((request.url, request.headers)))

        # The verification link shows a button; opening it confirms nothing.
        response = page.goto(verify_link)
        assert_page_headers(response, 200)
        assert heading(page) == "Confirm your email address"
        assert_error(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
                     401, "invalid_credentials")

        # Pressing the button does: the page says the address is verified.
        with page.expect_navigation() as confirmed:
            page.get_by_role("button", name="Confirm my email address").click()
        assert_page_headers(confirmed.value, 200)
        assert confirmed.value.request.method == "POST"
        assert heading(page) == "Email address verified"
        assert "verified" in page.locator("main").inner_text()
        login(client, email, PASSWORD)

        # The same link again: it is spent, and the page says so.
        response = page.goto(verify_link)
        assert_page_headers(response, 400)
        assert heading(page) == "This link does not work"

        # Forgot -> the reset link opens a form; a common password is refused in the page.
        forgot = client.post("/v1/auth/password/forgot", json={"email": email})
        assert forgot.status_code == 202
        reset_link = next(link for link in wait_mail(smtp, email, RESET_SUBJECT).links()
                          if "/reset-password?token=" in link)
        response = page.goto(reset_link)
        assert_page_headers(response, 200)
        assert heading(page) == "Choose a new password"
        password_field = page.get_by_label("New password")
        assert password_field.get_attribute("type") == "password"

        password_field.fill("password123")
        with page.expect_navigation() as refused:
            page.get_by_role("button", name="Set password").click()
        assert_page_headers(refused.value, 422)
        assert page.get_by_role("alert").inner_text().strip(), "no error shown"
        login(client, email, PASSWORD)  # nothing changed

        page.get_by_label("New password").fill(NEW_PASSWORD)
        with page.expect_navigation() as changed:
            page.get_by_role("button", name="Set password").click()
        assert_page_headers(changed.value, 200)
        assert heading(page) == "Password changed"
        assert changed.value.request.method == "POST"

        assert_error(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
                     401, "invalid_credentials")
        assert_access_works(client, login(client, email, NEW_PASSWORD)["access_token"],
                            "login with the password set in the browser")

        # The pages load nothing else, and no request carried the token in a Referer.
        assert {url.split("?")[0] for url, _ in requested} <= {
            f"{process.url}/verify-email", f"{process.url}/reset-password"}, requested
        assert not [url for url, headers in requested if "token=" in headers.get("referer", "")]
        context.close()
