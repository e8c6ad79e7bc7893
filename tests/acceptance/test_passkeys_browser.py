"""Passkeys for real: Debian's Chromium with Chrome's virtual authenticator (WebAuthn over
the DevTools protocol, through Playwright), against the real binary.

The page runs on authnode's own origin (``http://localhost:PORT``, the relying party of
``PUBLIC_URL``): the browser is handed a small test page at a path of that origin, whose
script calls the API with ``fetch`` and WebAuthn with ``navigator.credentials``, as an
app's sign-in page would. Registers a passkey, logs in with it alone, then uses it as the
second factor after the password.

One Redis mode: the API tests cover both; this proves the browser side.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from playwright.sync_api import Browser, Page, Route

from tests.acceptance.test_accounts_support import (
    assert_error,
    bearer,
    login,
    register_verified,
    running,
)
from tests.acceptance.test_pages_browser import PAGE_TIMEOUT_MS, launched_chromium
from tests.harness import AuthnodeEnv
from tests.services import SmtpRecorder, free_port

TEST_PAGE = "/__passkey-test__"
PAGE_HTML = "<!doctype html><title>passkeys</title><main>test page</main>"

REGISTER_JS = """async ({token}) => {
  const headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"};
  const options = await (await fetch("/v1/mfa/webauthn/register/options",
                                     {method: "POST", headers})).json();
  const credential = await navigator.credentials.create(
      {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options)});
  const answer = await fetch("/v1/mfa/webauthn/register", {method: "POST", headers,
      body: JSON.stringify({credential: credential.toJSON(), name: "Chromium"})});
  return [answer.status, await answer.json()];
}"""

PASSWORDLESS_JS = """async () => {
  const options = await (await fetch("/v1/auth/passkey/options", {method: "POST"})).json();
  const credential = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  const answer = await fetch("/v1/auth/passkey", {method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({credential: credential.toJSON()})});
  return [answer.status, await answer.json()];
}"""

SECOND_FACTOR_JS = """async ({mfaToken}) => {
  const headers = {"Content-Type": "application/json"};
  const options = await (await fetch("/v1/auth/mfa/webauthn/options", {method: "POST",
      headers, body: JSON.stringify({mfa_token: mfaToken})})).json();
  const credential = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  const answer = await fetch("/v1/auth/mfa/webauthn", {method: "POST", headers,
      body: JSON.stringify({mfa_token: mfaToken, credential: credential.toJSON()})});
  return [answer.status, await answer.json()];
}"""


@pytest.fixture
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


def _page_with_authenticator(browser: Browser, origin: str) -> tuple[Page, dict[str, Any]]:
    """A page at ``origin`` + TEST_PAGE with a virtual platform authenticator that keeps
    discoverable credentials and verifies the user (as a fingerprint reader would)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)

    def serve(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body=PAGE_HTML)

    page.route(f"{origin}{TEST_PAGE}", serve)
    devtools = context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    added = devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})
    page.goto(origin + TEST_PAGE)
    return page, {"devtools": devtools, "authenticator": added["authenticatorId"]}


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_passkeys_in_chromium(authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
                              browser: Browser) -> None:
    port = free_port()
    origin = f"http://localhost:{port}"  # a secure context, and a valid RP ID (no IPs)
    env = authnode_env.with_overrides(PUBLIC_URL=origin)
    with running(env, "all", port=port) as process:
        client = process.client
        email, user = register_verified(client, smtp, prefix="chromium")
        tokens = login(client, email)
        page, virtual = _page_with_authenticator(browser, origin)

        status, passkey = page.evaluate(REGISTER_JS, {"token": tokens["access_token"]})
        assert status == 201, passkey
        assert passkey["name"] == "Chromium"
        stored = virtual["devtools"].send("WebAuthn.getCredentials",
                                          {"authenticatorId": virtual["authenticator"]})
        assert len(stored["credentials"]) == 1 and stored["credentials"][0]["isResidentCredential"]

        # Passwordless: the browser picks the discoverable credential of this site.
        status, alone = page.evaluate(PASSWORDLESS_JS)
        assert status == 200, alone
        claims = _claims(alone["access_token"])
        assert claims["sub"] == user["id"] and claims["amr"] == ["hwk"] and claims["aal"] == 2

        # Second factor after the password.
        response = client.post("/v1/auth/login", json={"email": email,
                                                       "password": "correct horse battery staple"})
        assert response.status_code == 401 and response.json()["methods"] == ["webauthn"]
        status, second = page.evaluate(SECOND_FACTOR_JS,
                                       {"mfaToken": response.json()["mfa_token"]})
        assert status == 200, second
        assert _claims(second["access_token"])["amr"] == ["pwd", "hwk"]
        counters = virtual["devtools"].send("WebAuthn.getCredentials",
                                            {"authenticatorId": virtual["authenticator"]})
        assert counters["credentials"][0]["signCount"] >= 2

        # The passkey list shows it used; the old password-only session cannot remove it.
        listed = client.get("/v1/mfa/webauthn", headers=bearer(second["access_token"])).json()
        assert listed["passkeys"][0]["last_used_at"] is not None
        assert_error(client.delete(f"/v1/mfa/webauthn/{passkey['id']}",
                                   headers=bearer(tokens["access_token"])),
                     403, "reauthentication_required")
        page.context.close()
