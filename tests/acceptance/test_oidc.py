"""Signing in with an OpenID Connect provider, end to end: the real ``authnode serve``
and a real provider (panva's oidc-provider, tests/services/oidc_provider.py), both Redis
modes. The browser is played by httpx: it follows the provider's redirects with the
provider's cookies and brings the callback to authnode.

Hostile inputs refused here: a replayed, made-up or concurrently used ``state``, an
address the provider does not call verified, a ``return_to`` on another origin, an
unknown or unreachable provider; the ID token's own forgeries are in
tests/unit/oidc/test_idtoken.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from authnode.mfa import totp
from tests.acceptance.test_accounts_support import (
    PASSWORD,
    assert_error,
    assert_tokens,
    bearer,
    describe,
    login,
    register_verified,
    reset_token,
    wait_mail,
)
from tests.acceptance.test_hosted_pages import CookieJar
from tests.acceptance.test_hosted_pages import form_actions as forms
from tests.acceptance.test_mfa import enroll_totp
from tests.conftest import OIDC_TEST_PROVIDER, OIDC_TEST_PUBLIC_URL
from tests.harness import AuthnodeEnv, AuthnodeProcess, link_token, unique_email
from tests.harness import link_token as link_token_of
from tests.services import OidcProviderServer, SmtpRecorder, free_port, wait_until
from tests.services.oidc_provider import CLIENT_ID, CLIENT_SECRET

IDP = OIDC_TEST_PROVIDER
MAX_HOPS = 10


@pytest.fixture
def oidc_env(authnode_env: AuthnodeEnv, oidc_provider: OidcProviderServer) -> AuthnodeEnv:
    """The deployment with the test provider and one that cannot be reached."""
    return authnode_env.with_overrides(
        PUBLIC_URL=OIDC_TEST_PUBLIC_URL, OIDC_PROVIDERS=f"{IDP},down",
        OIDC_IDP_ISSUER=oidc_provider.issuer, OIDC_IDP_CLIENT_ID=CLIENT_ID,
        OIDC_IDP_CLIENT_SECRET=CLIENT_SECRET, OIDC_IDP_DISPLAY_NAME="Test IdP",
        OIDC_DOWN_ISSUER=f"http://127.0.0.1:{free_port()}", OIDC_DOWN_CLIENT_ID="x",
        OIDC_DOWN_CLIENT_SECRET="y", METRICS_BIND=f"127.0.0.1:{free_port()}")


@pytest.fixture
def server(oidc_env: AuthnodeEnv) -> Iterator[AuthnodeProcess]:
    process = oidc_env.start("all")
    yield process
    code = process.stop()
    assert code == 0, process.logs()


def account(provider: OidcProviderServer, *, verified: bool = True,
            email: str | None = None) -> tuple[str, str]:
    """A new account at the provider: (its id, its email)."""
    account_id = "acct-" + secrets.token_hex(6)
    email = email or unique_email("oidc")
    provider.put_account(account_id, email=email, email_verified=verified, name="Ann Oidc")
    return account_id, email


def to_authnode(server: AuthnodeProcess, url: str) -> str:
    """PUBLIC_URL's address as the local process serves it."""
    assert url.startswith(OIDC_TEST_PUBLIC_URL + "/"), url
    return server.url + url[len(OIDC_TEST_PUBLIC_URL):]


def through_provider(server: AuthnodeProcess, authorization_url: str,
                     account_id: str) -> str:
    """Follow the provider's redirects as a browser would, signing in as ``account_id``;
    returns the callback URL (on authnode's local address), not yet visited."""
    url = f"{authorization_url}&login_hint={account_id}"
    with httpx.Client(timeout=10) as browser:
        for _ in range(MAX_HOPS):
            response = browser.get(url)
            assert response.status_code in (302, 303), describe(response)
            url = str(response.url.join(response.headers["location"]))
            if url.startswith(OIDC_TEST_PUBLIC_URL):
                return to_authnode(server, url)
    raise AssertionError("the provider never came back")


def start(server: AuthnodeProcess, **params: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/auth/oidc/{params.pop('provider', IDP)}/start",
                     params=params, timeout=10)


@dataclass(frozen=True)
class Callback:
    """Where the provider sent the browser back, and the browser's binding cookie."""

    url: str
    cookie: str

    def visit(self, *, with_cookie: bool = True) -> httpx.Response:
        return httpx.get(self.url, headers={"Cookie": self.cookie} if with_cookie else {},
                         timeout=10)


def callback_url(server: AuthnodeProcess, account_id: str, *, return_to: str = "/done",
                 mode: str = "app", tamper: Callable[[str], str] = lambda url: url
                 ) -> Callback:
    """``tamper``: what an attacker changes in the authorization URL on its way."""
    response = start(server, return_to=return_to, mode=mode)
    assert response.status_code == 302, describe(response)
    location = response.headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    assert query["redirect_uri"] == [f"{OIDC_TEST_PUBLIC_URL}/v1/auth/oidc/{IDP}/callback"]
    (set_cookie,) = response.headers.get_list("set-cookie")
    assert "HttpOnly" in set_cookie and "Path=/v1/auth/oidc/" in set_cookie, set_cookie
    return Callback(through_provider(server, tamper(location), account_id),
                    set_cookie.split(";")[0])


def code_from(response: httpx.Response, return_to: str) -> str:
    assert response.status_code == 302, describe(response)
    location = response.headers["location"]
    assert location.startswith(return_to + "?code="), location
    assert "token" not in location, "no token in a URL"
    return parse_qs(urlsplit(location).query)["code"][0]


def sign_in(server: AuthnodeProcess, account_id: str) -> httpx.Response:
    """The whole app flavour: start, provider, callback, exchange (its answer)."""
    callback = callback_url(server, account_id).visit()
    code = code_from(callback, f"{OIDC_TEST_PUBLIC_URL}/done")
    return server.client.post("/v1/auth/oidc/exchange", json={"code": code})


def link_required(server: AuthnodeProcess, oidc_provider: OidcProviderServer,
                  smtp: SmtpRecorder) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """A password account, and a provider account with the same verified address whose
    sign-in answers 409 link_required: (email, user, provider account id, the answer)."""
    email, user = register_verified(server.client, smtp)
    account_id, _ = account(oidc_provider, email=email)
    refused = sign_in(server, account_id)
    assert refused.status_code == 409, describe(refused)
    body: dict[str, Any] = refused.json()
    assert body["error"]["code"] == "link_required" and body["email"] == email
    assert body["methods"] == ["password", "email", "sign_in_and_link"]
    return email, user, account_id, body


def identities(server: AuthnodeProcess, access_token: str) -> list[dict[str, Any]]:
    response = server.client.get("/v1/users/me/identities", headers=bearer(access_token))
    assert response.status_code == 200, describe(response)
    found: list[dict[str, Any]] = response.json()["identities"]
    return found


def test_first_sign_in_creates_an_account_the_second_signs_in(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer) -> None:
    account_id, email = account(oidc_provider)
    callback = callback_url(server, account_id).visit()
    code = code_from(callback, f"{OIDC_TEST_PUBLIC_URL}/done")
    first = assert_tokens(server.client.post("/v1/auth/oidc/exchange", json={"code": code}),
                          email=email)
    assert first["user"]["email_verified"] is True and first["user"]["name"] == "Ann Oidc"
    # The code works once.
    assert_error(server.client.post("/v1/auth/oidc/exchange", json={"code": code}),
                 400, "invalid_token")
    second = assert_tokens(sign_in(server, account_id), email=email)
    assert second["user"]["id"] == first["user"]["id"]
    (identity,) = identities(server, second["access_token"])
    assert (identity["provider"], identity["display_name"], identity["email"]) == (
        IDP, "Test IdP", email)
    sessions = server.client.get("/v1/sessions", headers=bearer(second["access_token"]))
    assert len(sessions.json()["sessions"]) == 2, describe(sessions)
    # No password: a password login is refused like any wrong one; the last way in stays.
    assert_error(server.client.post("/v1/auth/login", json={"email": email,
                                                             "password": PASSWORD}),
                 401, "invalid_credentials")
    assert_error(server.client.post("/v1/auth/password/change", headers=bearer(
        second["access_token"]), json={"current_password": "", "new_password": PASSWORD}),
        409, "no_password")
    assert_error(server.client.delete(f"/v1/users/me/identities/{identity['id']}",
                                      headers=bearer(second["access_token"])),
                 409, "last_sign_in_method")
    assert len(identities(server, second["access_token"])) == 1
    metrics_text = server.logs()
    assert code not in metrics_text and second["access_token"] not in metrics_text


def test_a_matching_email_is_linked_only_once_its_owner_confirms(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer,
        smtp: SmtpRecorder) -> None:
    email, user, account_id, body = link_required(server, oidc_provider, smtp)
    own = login(server.client, email)
    assert identities(server, own["access_token"]) == [], "not linked before confirming"
    wrong = server.client.post("/v1/auth/oidc/link/confirm",
                               json={"link_token": body["link_token"], "password": "nope"})
    assert_error(wrong, 401, "invalid_credentials")
    confirmed = assert_tokens(server.client.post(
        "/v1/auth/oidc/link/confirm",
        json={"link_token": body["link_token"], "password": PASSWORD}), email=email)
    assert confirmed["user"]["id"] == user["id"]
    assert_error(server.client.post("/v1/auth/oidc/link/confirm", json={
        "link_token": body["link_token"], "password": PASSWORD}), 400, "invalid_token")
    (identity,) = identities(server, own["access_token"])
    again = assert_tokens(sign_in(server, account_id), email=email)
    assert again["user"]["id"] == user["id"], "now it signs in directly"
    # The account has a password: the identity may go, and the next sign-in asks again.
    unlinked = server.client.delete(f"/v1/users/me/identities/{identity['id']}",
                                    headers=bearer(own["access_token"]))
    assert unlinked.status_code == 204, describe(unlinked)
    assert identities(server, own["access_token"]) == []
    assert sign_in(server, account_id).status_code == 409


def test_a_signed_in_user_links_and_unlinks_a_provider(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer,
        smtp: SmtpRecorder) -> None:
    email, user = register_verified(server.client, smtp)
    own = login(server.client, email)
    account_id, _ = account(oidc_provider, email=unique_email("other-address"))
    started = server.client.post(f"/v1/users/me/identities/{IDP}",
                                 headers=bearer(own["access_token"]),
                                 json={"return_to": "/account"})
    assert started.status_code == 200, describe(started)
    callback = httpx.get(through_provider(server, started.json()["authorization_url"],
                                          account_id), timeout=10)
    assert callback.status_code == 303, describe(callback)
    location = callback.headers["location"]
    assert location.startswith(f"{OIDC_TEST_PUBLIC_URL}/account?link_code="), location
    link_code = parse_qs(urlsplit(location).query)["link_code"][0]
    assert identities(server, own["access_token"]) == [], "not before its user confirms"
    # The callback URL forwarded to someone else: their token cannot finish the link.
    other_email, _ = register_verified(server.client, smtp)
    other = login(server.client, other_email)
    assert_error(server.client.post("/v1/users/me/identities", json={"link_code": link_code},
                                    headers=bearer(other["access_token"])),
                 400, "invalid_token")
    finished = server.client.post("/v1/users/me/identities", json={"link_code": link_code},
                                  headers=bearer(own["access_token"]))
    assert finished.status_code == 201, describe(finished)
    assert_error(server.client.post("/v1/users/me/identities", json={"link_code": link_code},
                                    headers=bearer(own["access_token"])), 400, "invalid_token")
    (identity,) = identities(server, own["access_token"])
    assert identity == finished.json()
    signed_in = assert_tokens(sign_in(server, account_id))
    assert signed_in["user"]["id"] == user["id"]
    # Someone else cannot link the same provider account.
    started = server.client.post(f"/v1/users/me/identities/{IDP}",
                                 headers=bearer(other["access_token"]), json={})
    stolen = httpx.get(through_provider(server, started.json()["authorization_url"],
                                        account_id), timeout=10)
    assert stolen.status_code == 303, describe(stolen)
    stolen_code = parse_qs(urlsplit(stolen.headers["location"]).query)["link_code"][0]
    assert_error(server.client.post("/v1/users/me/identities", json={
        "link_code": stolen_code}, headers=bearer(other["access_token"])),
        409, "identity_in_use")
    assert identities(server, other["access_token"]) == []
    unlinked = server.client.delete(f"/v1/users/me/identities/{identity['id']}",
                                    headers=bearer(own["access_token"]))
    assert unlinked.status_code == 204, describe(unlinked)
    assert_error(server.client.delete(f"/v1/users/me/identities/{identity['id']}",
                                      headers=bearer(own["access_token"])), 404, "not_found")


def test_the_hosted_page_flavour_sets_cookies_and_goes_back(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer) -> None:
    account_id, _ = account(oidc_provider)
    callback = callback_url(server, account_id, return_to="/account", mode="page").visit()
    assert callback.status_code == 303, describe(callback)
    assert callback.headers["location"] == f"{OIDC_TEST_PUBLIC_URL}/account"
    cookies = callback.headers.get_list("set-cookie")
    # PUBLIC_URL is not localhost: the __Host- cookies, Secure and HttpOnly.
    for name in ("__Host-authnode_refresh=", "__Host-authnode_access="):
        assert any(c.startswith(name) and "HttpOnly" in c and "Secure" in c
                   for c in cookies), cookies


def test_state_is_single_use_and_unforgeable(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer) -> None:
    account_id, _ = account(oidc_provider)
    callback = callback_url(server, account_id)
    url = callback.url
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(callback.visit()))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(a.status_code for a in answers) == [302, 400, 400], \
        [describe(a) for a in answers]
    for answer in answers:
        if answer.status_code == 400:
            assert_error(answer, 400, "invalid_state")
    assert_error(callback.visit(), 400, "invalid_state")  # a replay later
    forged = url.split("?")[0] + "?code=abc&state=" + secrets.token_urlsafe(32)
    assert_error(httpx.get(forged, timeout=10), 400, "invalid_state")
    assert_error(httpx.get(url.split("?")[0], timeout=10), 400, "invalid_state")
    # A callback URL sent to someone else (login CSRF): without the starting browser's
    # cookie it signs no one in.
    forwarded = callback_url(server, account_id)
    body = assert_error(forwarded.visit(with_cookie=False), 400, "invalid_state")
    assert "another browser" in body["error"]["message"]


def test_hostile_and_failing_sign_ins_get_clear_errors(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer) -> None:
    unverified_id, unverified_email = account(oidc_provider, verified=False)
    assert_error(callback_url(server, unverified_id).visit(), 403,
                 "provider_email_not_verified")
    for foreign in ("https://evil.example.com/x", "//evil.example.com", "/\\evil.example.com",
                    "javascript:alert(1)"):
        assert_error(start(server, return_to=foreign), 400, "invalid_return_to")
    assert_error(start(server, mode="app"), 400, "invalid_return_to")  # nowhere to send it
    assert_error(start(server, return_to="/done", mode="other"), 422, "invalid_request")
    assert_error(start(server, provider="nope", return_to="/done"), 404, "unknown_provider")
    down = start(server, provider="down", return_to="/done")
    body = assert_error(down, 503, "provider_unavailable")
    assert "'down'" in body["error"]["message"]
    assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200
    listed = server.client.get("/v1/auth/oidc/providers").json()["providers"]
    assert listed == [{"name": IDP, "display_name": "Test IdP"},
                      {"name": "down", "display_name": "Down"}]
    assert_error(server.client.post("/v1/auth/oidc/exchange", json={"code": "made-up"}),
                 400, "invalid_token")
    denied = callback_url(server, "no-such-account").visit()
    assert_error(denied, 400, "provider_error")
    assert unverified_email not in server.logs()


def _claims(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def test_a_provider_sign_in_is_recorded_and_a_second_factor_still_asked(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer,
        oidc_env: AuthnodeEnv) -> None:
    account_id, email = account(oidc_provider)
    first = assert_tokens(sign_in(server, account_id), email=email)
    claims = _claims(first["access_token"])
    assert claims["amr"] == ["ext"] and claims["aal"] == 1
    secret, _ = enroll_totp(server.client, first["access_token"])
    asked = sign_in(server, account_id)
    assert asked.status_code == 401, describe(asked)
    body = asked.json()
    assert body["error"]["code"] == "mfa_required" and body["methods"][0] == "totp"
    finished = assert_tokens(server.client.post("/v1/auth/mfa", json={
        "mfa_token": body["mfa_token"],
        "code": totp.code_at(secret, time.time() + totp.STEP_S)}), email=email)
    claims = _claims(finished["access_token"])
    assert claims["amr"] == ["ext", "otp"] and claims["aal"] == 2

    def recorded() -> list[tuple[str, str]]:
        response = server.client.get("/v1/users/me/activity",
                                     headers=bearer(finished["access_token"]))
        events = [(e["event"], e["outcome"]) for e in response.json()["events"]]
        wanted = {("login.succeeded", f"oidc:{IDP}"), ("login.mfa_required", f"oidc:{IDP}"),
                  ("identity.linked", IDP), ("user.created", f"oidc:{IDP}")}
        return events if wanted <= set(events) else []

    wait_until(recorded, 15, "the provider sign-ins in the audit log")
    # Counted as logins, as a password login is.
    metrics_url = f"http://{oidc_env.variables['METRICS_BIND']}/metrics"
    text = httpx.get(metrics_url, timeout=5).text
    assert 'authnode_logins_total{outcome="success"} 1.0' in text, text[:2000]
    assert 'authnode_logins_total{outcome="mfa_required"} 1.0' in text


def test_the_same_subject_after_the_account_was_deleted_gets_a_new_account(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer) -> None:
    account_id, email = account(oidc_provider)
    first = assert_tokens(sign_in(server, account_id), email=email)
    # No password to type: a sign-in in the last REAUTH_MAX_AGE_S stands in for it.
    deleted = server.client.request("DELETE", "/v1/users/me", json={"password": ""},
                                    headers=bearer(first["access_token"]))
    assert deleted.status_code == 204, describe(deleted)
    again = assert_tokens(sign_in(server, account_id), email=email)
    assert again["user"]["id"] != first["user"]["id"]
    assert len(identities(server, again["access_token"])) == 1


def test_concurrent_first_sign_ins_of_one_identity_make_one_account(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer) -> None:
    account_id, email = account(oidc_provider)
    callbacks = [callback_url(server, account_id) for _ in range(3)]
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda c=c: answers.append(c.visit()))
               for c in callbacks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    ids = set()
    for answer in answers:
        code = code_from(answer, f"{OIDC_TEST_PUBLIC_URL}/done")
        tokens = assert_tokens(server.client.post("/v1/auth/oidc/exchange",
                                                  json={"code": code}), email=email)
        ids.add(tokens["user"]["id"])
    assert len(ids) == 1, ids


def test_an_account_without_a_password_sets_one_through_the_reset_email(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer,
        smtp: SmtpRecorder) -> None:
    account_id, email = account(oidc_provider)
    first = assert_tokens(sign_in(server, account_id), email=email)
    forgot = server.client.post("/v1/auth/password/forgot", json={"email": email})
    assert forgot.status_code == 202, describe(forgot)
    token = reset_token(smtp, email)
    reset = server.client.post("/v1/auth/password/reset",
                               json={"token": token, "password": PASSWORD})
    assert reset.status_code == 204, describe(reset)
    own = login(server.client, email)
    assert own["user"]["id"] == first["user"]["id"]
    # Now the password is another way in: the identity may go.
    (identity,) = identities(server, own["access_token"])
    unlinked = server.client.delete(f"/v1/users/me/identities/{identity['id']}",
                                    headers=bearer(own["access_token"]))
    assert unlinked.status_code == 204, describe(unlinked)


def test_an_account_with_a_second_factor_is_not_linked_on_its_password_alone(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer,
        smtp: SmtpRecorder) -> None:
    email, _ = register_verified(server.client, smtp)
    own = login(server.client, email)
    enroll_totp(server.client, own["access_token"])
    account_id, _ = account(oidc_provider, email=email)
    refused = sign_in(server, account_id)
    assert refused.status_code == 409, describe(refused)
    body = refused.json()
    assert body["methods"] == ["sign_in_and_link"]
    assert_error(server.client.post("/v1/auth/oidc/link/confirm", json={
        "link_token": body["link_token"], "password": PASSWORD}), 403, "sign_in_to_link")
    assert identities(server, own["access_token"]) == []


def test_a_tampered_authorization_request_is_refused_at_the_callback(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer) -> None:
    """End to end through the real provider: a nonce swapped on the way makes an ID token
    with another nonce (refused by authnode); a swapped PKCE challenge makes the provider
    refuse the code."""
    account_id, _ = account(oidc_provider)

    def replace(name: str) -> Callable[[str], str]:
        def change(url: str) -> str:
            parts = urlsplit(url)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            query[name] = "A" * 43
            return parts._replace(query=urlencode(query)).geturl()
        return change

    body = assert_error(callback_url(server, account_id, tamper=replace("nonce")).visit(),
                        400, "invalid_id_token")
    assert "nonce" in body["error"]["message"]
    assert_error(callback_url(server, account_id, tamper=replace("code_challenge")).visit(),
                 400, "code_exchange_failed")


def test_an_apps_own_pkce_binds_the_one_time_code(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer) -> None:
    """A code read from the return URL by someone else is worth nothing without the app's
    verifier; a wrong verifier does not spend it for the app."""
    account_id, email = account(oidc_provider)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()

    response = start(server, return_to="/done", code_challenge=challenge,
                     code_challenge_method="S256")
    assert response.status_code == 302, describe(response)
    cookie = response.headers["set-cookie"].split(";")[0]
    callback = Callback(through_provider(server, response.headers["location"], account_id),
                        cookie).visit()
    code = code_from(callback, f"{OIDC_TEST_PUBLIC_URL}/done")
    for wrong in ({"code": code}, {"code": code, "code_verifier": "B" * 43}):
        assert_error(server.client.post("/v1/auth/oidc/exchange", json=wrong),
                     400, "invalid_token")
    assert_tokens(server.client.post("/v1/auth/oidc/exchange", json={
        "code": code, "code_verifier": verifier}), email=email)
    assert_error(start(server, return_to="/done", code_challenge="short"),
                 422, "invalid_request")


def test_a_matching_email_is_linked_by_an_emailed_link(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer,
        smtp: SmtpRecorder) -> None:
    email, user, account_id, body = link_required(server, oidc_provider, smtp)
    sent = server.client.post("/v1/auth/oidc/link/email",
                              json={"link_token": body["link_token"]})
    assert sent.status_code == 202, describe(sent)
    token = link_token(wait_mail(smtp, email, "Confirm a new way to sign in"),
                       "/link-account")
    assert_error(server.client.post("/v1/auth/oidc/link/confirm-email",
                                    json={"token": "made-up" + token}), 400, "invalid_token")
    confirmed = assert_tokens(server.client.post("/v1/auth/oidc/link/confirm-email",
                                                 json={"token": token}), email=email)
    assert confirmed["user"]["id"] == user["id"]
    assert_error(server.client.post("/v1/auth/oidc/link/confirm-email",
                                    json={"token": token}), 400, "invalid_token")
    assert len(identities(server, confirmed["access_token"])) == 1
    assert assert_tokens(sign_in(server, account_id))["user"]["id"] == user["id"]


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_serve_refuses_a_bad_provider_setting_naming_it(oidc_env: AuthnodeEnv) -> None:
    """Startup only: one Redis mode is enough."""
    bind = f"127.0.0.1:{free_port()}"
    for changes, variable in (({"OIDC_IDP_ISSUER": "http://idp.example.com"},
                               "OIDC_IDP_ISSUER"),
                              ({"OIDC_IDP_CLIENT_SECRET": ""}, "OIDC_IDP_CLIENT_SECRET"),
                              ({"OIDC_TYPO_CLIENT_ID": "x"}, "OIDC_TYPO_CLIENT_ID")):
        result = oidc_env.with_overrides(**changes).run("serve", "--role", "api",
                                                         "--bind", bind)
        assert result.returncode == 2, (result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and variable in lines[0], result.stderr
        assert CLIENT_SECRET not in result.stderr + result.stdout


def _href(page: httpx.Response, text: str) -> str:
    """The ``href`` of the button-styled link with this text on a hosted page."""
    found = re.search(r'<a class="button" href="([^"]+)">' + re.escape(text) + "</a>",
                      page.text)
    assert found, page.text[:2000]
    return unescape(found.group(1))


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_the_hosted_pages_sign_in_with_a_provider_and_link_an_existing_account(
        server: AuthnodeProcess, oidc_provider: OidcProviderServer, smtp: SmtpRecorder
) -> None:
    """/login's "Sign in with …" button, the link page for an address that has an account
    (nothing linked until its password is given), and the providers on /account."""
    login_page = server.client.get("/login", params={"return_to": "/account"})
    button = _href(login_page, "Sign in with Test IdP")
    assert button == (f"{OIDC_TEST_PUBLIC_URL}/v1/auth/oidc/{IDP}/start?mode=page&"
                      f"return_to={'http%3A%2F%2Fauth.example.test%2Faccount'}")

    def through_button(account_id: str) -> httpx.Response:
        started = httpx.get(to_authnode(server, button), timeout=10)
        assert started.status_code == 302, describe(started)
        cookie = started.headers["set-cookie"].split(";")[0]
        back = through_provider(server, started.headers["location"], account_id)
        return httpx.get(back, headers={"Cookie": cookie}, timeout=10)

    # A new person: signed in, on /account.
    newcomer, _ = account(oidc_provider)
    signed_in = through_button(newcomer)
    assert signed_in.status_code == 303, describe(signed_in)
    assert signed_in.headers["location"] == f"{OIDC_TEST_PUBLIC_URL}/account"

    # An address with a password account: the link page, then its password.
    email, _ = register_verified(server.client, smtp, prefix="oidc-page")
    owner_at_idp, _ = account(oidc_provider, email=email)
    needs_link = through_button(owner_at_idp)
    assert needs_link.status_code == 303, describe(needs_link)
    continue_at = needs_link.headers["location"]
    assert continue_at.startswith(f"{OIDC_TEST_PUBLIC_URL}/login?oidc_code="), continue_at
    jar = CookieJar(server.client)
    query = {k: v[0] for k, v in parse_qs(urlsplit(continue_at).query).items()}
    link_page = jar.get("/login", **query)
    assert link_page.status_code == 200, describe(link_page)
    assert "Link your account" in link_page.text and email in link_page.text
    assert forms(link_page.text) == [f"{OIDC_TEST_PUBLIC_URL}/login/link",
                                     f"{OIDC_TEST_PUBLIC_URL}/login/link-email"]
    link_token = parse_qs_value(link_page.text, "link_token")
    wrong = jar.post("/login/link", {"link_token": link_token, "password": "nope nope",
                                     "return_to": "/account"}, origin=OIDC_TEST_PUBLIC_URL)
    assert wrong.status_code == 401, describe(wrong)
    assert not jar.cookies, "nothing linked, nobody signed in"
    # "Email me a link instead": the emailed link's page only shows a button.
    emailed = jar.post("/login/link-email", {"link_token": link_token},
                       origin=OIDC_TEST_PUBLIC_URL)
    assert emailed.status_code == 200 and "Check your email" in emailed.text
    token = link_token_of(wait_mail(smtp, email, "Confirm a new way to sign in"),
                          "/link-account")
    opened = jar.get("/link-account", token=token)
    assert opened.status_code == 200 and forms(opened.text) == [
        f"{OIDC_TEST_PUBLIC_URL}/link-account"]
    assert not jar.cookies, "opening the emailed link links nothing"
    linked = jar.post("/login/link", {"link_token": link_token, "password": PASSWORD,
                                      "return_to": "/account"}, origin=OIDC_TEST_PUBLIC_URL)
    assert linked.status_code == 303, describe(linked)
    assert linked.headers["location"] == f"{OIDC_TEST_PUBLIC_URL}/account"

    # /account lists the provider; unlinking it leaves the password.
    page = jar.get("/account")
    assert page.status_code == 200 and "Sign-in providers" in page.text, describe(page)
    (unlink,) = [a for a in forms(page.text) if a.endswith("/unlink")]
    unlinked = jar.post(unlink.removeprefix(OIDC_TEST_PUBLIC_URL),
                        origin=OIDC_TEST_PUBLIC_URL)
    assert unlinked.status_code == 303, describe(unlinked)
    assert "The provider is unlinked." in jar.get("/account", done="identity-unlinked").text
    assert f"{OIDC_TEST_PUBLIC_URL}/account/identities/{IDP}/link" in forms(
        jar.get("/account").text)


def parse_qs_value(html: str, name: str) -> str:
    """The value of a hidden field."""
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]+)">', html)
    assert found, html[:2000]
    return found.group(1)
