"""Hostile sign-ups: nobody gets an account on an address they do not read.

Against the real binary, in both Redis modes:

* a mail scanner's GET and HEAD of the verification link change nothing (no account, the
  link still works); only the page's "Confirm my email address" form POST confirms;
* an attacker who registers the victim's address before or after the victim changes
  nothing about the victim's link: each link creates the account with the password of
  the registration that sent it, the first confirmed wins, every other link dies then;
  the emails carry no attacker-chosen name and say when the account was asked for;
* links confirmed concurrently (different links of one address, and one link twice):
  exactly one succeeds, and exactly one account exists;
* a link replayed after success, and a pending link of an address whose account was
  deleted since, stay dead; the address registered again gets a new account;
* the pages' forms post to ``PUBLIC_URL``, its path prefix included.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from typing import Any

import httpx
from pymongo import MongoClient

from tests.acceptance.test_accounts_support import (
    ALREADY_REGISTERED_SUBJECT,
    OTHER_PASSWORD,
    PASSWORD,
    RESET_SUBJECT,
    VERIFY_SUBJECT,
    assert_error,
    bearer,
    describe,
    login,
    register,
    running,
    verification_token,
    verify,
    wait_email_jobs_settled,
    wait_mail,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess, link_token, unique_email
from tests.services import SmtpRecorder

PUBLIC_URL = "http://auth.example.test"  # tests/acceptance/conftest.py
ATTACKER_PASSWORD = "mallory's own passphrase 42"
ATTACKER_NAME = "IT Helpdesk: call +1 555 0100 now"
_FORM = re.compile(r'<form method="post" action="([^"]*)">')
_HIDDEN_TOKEN = re.compile(r'<input type="hidden" name="token" value="([^"]*)">')


def _confirm(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/v1/auth/verify-email", json={"token": token})


def _refused(client: httpx.Client, token: str, why: str) -> None:
    response = _confirm(client, token)
    assert response.status_code == 400, f"{why}: {describe(response)}"
    assert_error(response, 400, "invalid_token")


def _no_account(client: httpx.Client, email: str, password: str, why: str) -> None:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401, f"{why}: {describe(response)}"
    assert_error(response, 401, "invalid_credentials")


def _accounts_with(env: AuthnodeEnv, email: str) -> int:
    with MongoClient(env.variables["MONGODB_URI"], serverSelectionTimeoutMS=5000) as mongo:
        return mongo.get_default_database()["users"].count_documents({"email": email})


def _form(page: httpx.Response) -> tuple[str, str | None]:
    """(action, hidden token or None) of the page's one form."""
    actions = _FORM.findall(page.text)
    assert len(actions) == 1, page.text
    token = _HIDDEN_TOKEN.search(page.text)
    return unescape(actions[0]), unescape(token.group(1)) if token else None


def test_opening_the_link_changes_nothing_only_the_button_confirms(
        authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    client = authnode.client
    email = unique_email("scanned")
    register(client, email)
    token = verification_token(smtp, email)

    # What a mail scanner does: GET and HEAD the link, several times.
    for _ in range(3):
        page = client.get("/verify-email", params={"token": token})
        assert page.status_code == 200, describe(page)
        head = client.head("/verify-email", params={"token": token})
        assert head.status_code == 200 and head.content == b"", describe(head)
    _no_account(client, email, PASSWORD, "after GET and HEAD of the link")

    # The page is a button that posts the token back; no script needed.
    assert "Confirm my email address" in page.text
    assert "<script" not in page.text
    action, hidden = _form(page)
    assert action == f"{PUBLIC_URL}/verify-email"
    assert hidden == token
    policy = page.headers.get("content-security-policy", "")
    assert f"form-action {PUBLIC_URL};" in policy, policy

    # Pressing it (the form POST to this page) confirms, once.
    confirmed = client.post("/verify-email", data={"token": hidden})
    assert confirmed.status_code == 200, describe(confirmed)
    assert "Email address verified" in confirmed.text
    login(client, email)
    again = client.post("/verify-email", data={"token": hidden})
    assert again.status_code == 400 and "This link does not work" in again.text
    spent = client.get("/verify-email", params={"token": token})
    assert spent.status_code == 400 and "This link does not work" in spent.text


def test_an_earlier_registration_by_an_attacker_cannot_take_the_account(
        authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    """The attacker registers first with their password and a name; the victim registers
    after. The victim's own link gives the victim's password; the attacker's dies."""
    client = authnode.client
    victim = unique_email("victim")
    register(client, victim, ATTACKER_PASSWORD, name=ATTACKER_NAME)
    attackers_mail = wait_mail(smtp, victim, VERIFY_SUBJECT)
    register(client, victim, PASSWORD)
    victims_link = verification_token(smtp, victim, count=2)
    attackers_link = link_token(attackers_mail, "/verify-email")

    # The mail the attacker caused: no attacker-chosen words, a time, and "not you".
    for body in (attackers_mail.text, attackers_mail.html or ""):
        flat = " ".join(body.split())
        assert "IT Helpdesk" not in flat and "555 0100" not in flat, flat
        assert re.search(r"requested on \d{1,2} [A-Z][a-z]+ \d{4} at \d\d:\d\d UTC", flat), flat
        assert "If it was not you, ignore this email" in flat, flat

    user = verify(client, victims_link)
    assert user["name"] is None
    login(client, victim, PASSWORD)
    _no_account(client, victim, ATTACKER_PASSWORD, "the attacker's password")
    _refused(client, attackers_link, "the attacker's link after the victim confirmed")
    _no_account(client, victim, ATTACKER_PASSWORD, "after the attacker's link was tried")


def test_a_later_registration_never_changes_an_earlier_link(
        authnode: AuthnodeProcess, authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    """The victim registers first; an attacker registers the same address after (and again
    once it is verified). The victim's earlier link still gives the victim's password."""
    client = authnode.client
    victim = unique_email("first")
    register(client, victim, PASSWORD, name="Victim")
    victims_link = verification_token(smtp, victim)
    register(client, victim, ATTACKER_PASSWORD, name=ATTACKER_NAME)
    attackers_link = verification_token(smtp, victim, count=2)

    user = verify(client, victims_link)
    assert user["name"] == "Victim"
    login(client, victim, PASSWORD)
    _no_account(client, victim, ATTACKER_PASSWORD, "the later registration's password")
    _refused(client, attackers_link, "a later registration's link after the first won")

    # Registering the verified address: the same answer, a notice without the name or a
    # link, and nothing changes.
    register(client, victim, ATTACKER_PASSWORD, name=ATTACKER_NAME)
    notice = wait_mail(smtp, victim, ALREADY_REGISTERED_SUBJECT)
    assert "token=" not in notice.text and ATTACKER_NAME not in notice.text
    wait_email_jobs_settled(authnode_env)
    assert [m.subject for m in smtp.messages(victim)].count(VERIFY_SUBJECT) == 2
    login(client, victim, PASSWORD)
    assert _accounts_with(authnode_env, victim) == 1


def _all_at_once(url: str, tokens: list[str]) -> list[httpx.Response]:
    """POST each token to /v1/auth/verify-email, each on its own connection, released
    together by a barrier."""
    barrier = threading.Barrier(len(tokens))

    def confirm(token: str) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as own:
            own.get("/healthz")  # connect first, so the POSTs leave together
            barrier.wait(timeout=30)
            return _confirm(own, token)

    with ThreadPoolExecutor(len(tokens)) as pool:
        return list(pool.map(confirm, tokens))


def test_concurrent_confirmations_create_exactly_one_account(
        authnode: AuthnodeProcess, authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    client = authnode.client
    for round_ in range(2):
        email = unique_email(f"race{round_}")
        passwords = [f"racing passphrase {round_}-{n}" for n in range(4)]
        for password in passwords:
            register(client, email, password)
        links = [verification_token(smtp, email, count=n + 1) for n in range(len(passwords))]
        # Mails arrive in registration order only by chance: the winner's password is
        # found afterwards, by logging in.
        attempts = links + links[:2]  # two links are also confirmed twice at once
        responses = _all_at_once(authnode.url, attempts)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [400] * (len(attempts) - 1), \
            [describe(r) for r in responses]
        for response in responses:
            if response.status_code == 400:
                assert_error(response, 400, "invalid_token")
        assert _accounts_with(authnode_env, email) == 1
        winners = [p for p in passwords
                   if client.post("/v1/auth/login",
                                  json={"email": email, "password": p}).status_code == 200]
        assert len(winners) == 1, winners
        for token in links:
            _refused(client, token, "any link after the race")


def test_replayed_and_stale_links_stay_dead_and_a_new_account_gets_a_new_id(
        authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    client = authnode.client
    email = unique_email("again")
    register(client, email, PASSWORD)
    register(client, email, OTHER_PASSWORD)
    first_link = verification_token(smtp, email)
    second_link = verification_token(smtp, email, count=2)
    one = _confirm(client, first_link)
    assert one.status_code == 200, describe(one)
    first_user: dict[str, Any] = one.json()["user"]
    _refused(client, first_link, "the same link replayed")
    winner = PASSWORD if client.post("/v1/auth/login", json={
        "email": email, "password": PASSWORD}).status_code == 200 else OTHER_PASSWORD
    tokens = login(client, email, winner)

    deleted = client.request("DELETE", "/v1/users/me", json={"password": winner},
                             headers=bearer(tokens["access_token"]))
    assert deleted.status_code == 204, describe(deleted)
    # The address is free, but links sent before the first account was made stay dead.
    _refused(client, second_link, "a link that lost, after the account was deleted")
    _refused(client, first_link, "the winning link, after the account was deleted")
    _no_account(client, email, PASSWORD, "after deletion")
    _no_account(client, email, OTHER_PASSWORD, "after deletion")

    register(client, email, "a third, new passphrase")
    fresh = verify(client, verification_token(smtp, email, count=3))
    assert fresh["id"] != first_user["id"]
    login(client, email, "a third, new passphrase")
    response = client.get("/v1/users/me", headers=bearer(tokens["access_token"]))
    assert_error(response, 401, "invalid_token")


def test_the_pages_forms_post_to_public_url_with_its_path_prefix(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    """Behind a proxy that serves authnode under /sso/, the forms must post there, not to
    the path this process saw (which the proxy would not route back)."""
    public_url = PUBLIC_URL + "/sso"
    env = authnode_env.with_overrides(PUBLIC_URL=public_url + "/")
    with running(env) as process:
        client = process.client
        email = unique_email("prefixed")
        register(client, email)
        verify_mail = wait_mail(smtp, email, VERIFY_SUBJECT)
        token = link_token(verify_mail, "/sso/verify-email")
        page = client.get("/verify-email", params={"token": token})  # the proxy strips /sso
        assert page.status_code == 200, describe(page)
        assert _form(page) == (f"{public_url}/verify-email", token)
        verify(client, token)

        forgot = client.post("/v1/auth/password/forgot", json={"email": email})
        assert forgot.status_code == 202, describe(forgot)
        token = link_token(wait_mail(smtp, email, RESET_SUBJECT), "/sso/reset-password")
        page = client.get("/reset-password", params={"token": token})
        assert page.status_code == 200, describe(page)
        assert _form(page) == (f"{public_url}/reset-password", token)
        policy = page.headers.get("content-security-policy", "")
        assert f"form-action {PUBLIC_URL};" in policy, policy


def test_the_per_address_email_limit_still_holds(authnode_env: AuthnodeEnv,
                                                 smtp: SmtpRecorder) -> None:
    """EMAIL_ADDRESS_LIMIT=1/1m: registering one address three times in a row (every
    answer 202, as always) sends it one verification email, whose link works."""
    env = authnode_env.with_overrides(EMAIL_ADDRESS_LIMIT="1/1m")
    with running(env) as process:
        client = process.client
        email = unique_email("flooded")
        passwords = [f"flooding passphrase {n}" for n in range(3)]
        for password in passwords:
            register(client, email, password)
        wait_email_jobs_settled(env)
        assert [m.subject for m in smtp.messages(email)] == [VERIFY_SUBJECT]
        verify(client, verification_token(smtp, email))
        answers = [client.post("/v1/auth/login", json={"email": email, "password": p})
                   .status_code for p in passwords]
        assert sorted(answers) == [200, 401, 401], answers
