"""Settings whose effect a user sees: the password hash upgraded on login when the Argon2
parameters are raised, the per-address email limit, and the redirect URLs of the link pages.

The rehash and the redirects do not depend on Redis (the stored hash; a page's answer), so
they run on the single-node Redis; the email limit is a Redis counter and runs in both modes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import argon2
import httpx
import pytest
from pymongo import MongoClient

from tests.acceptance.test_accounts_support import (
    PASSWORD,
    RESET_SUBJECT,
    VERIFY_SUBJECT,
    describe,
    login,
    register,
    register_verified,
    reset_token,
    running,
    verification_token,
    verify,
    wait_email_jobs_settled,
)
from tests.harness import AuthnodeEnv, unique_email
from tests.services import SmtpRecorder

DEFAULT_PARAMS = "m=19456,t=2,p=1"
RAISED = {"ARGON2_MEMORY_KIB": "24576", "ARGON2_TIME_COST": "3"}
RAISED_PARAMS = "m=24576,t=3,p=1"
VERIFY_REDIRECT = "https://app.example.test/welcome?from=mail"
RESET_REDIRECT = "https://app.example.test/new-password"


def _stored_hash(env: AuthnodeEnv, email: str) -> str:
    with MongoClient(env.variables["MONGODB_URI"], serverSelectionTimeoutMS=5000) as mongo:
        user: dict[str, Any] | None = mongo.get_default_database().users.find_one(
            {"email": email})
    assert user is not None, email
    return str(user["password_hash"])


def _verifies(stored_hash: str, password: str) -> bool:
    try:
        return argon2.PasswordHasher().verify(stored_hash, password)
    except argon2.exceptions.VerificationError:
        return False


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_raised_argon2_parameters_rehash_the_password_on_login(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    with running(authnode_env, "all") as node:
        email, _ = register_verified(node.client, smtp, prefix="rehash")
        login(node.client, email)
    old_hash = _stored_hash(authnode_env, email)
    assert f"$argon2id$v=19${DEFAULT_PARAMS}$" in old_hash

    raised = authnode_env.with_overrides(**RAISED)
    with running(raised, "api") as api:
        wrong = api.client.post("/v1/auth/login",
                                json={"email": email, "password": "not " + PASSWORD})
        assert wrong.status_code == 401, describe(wrong)
        assert _stored_hash(authnode_env, email) == old_hash, "rehashed without the password"
        login(api.client, email)
        new_hash = _stored_hash(authnode_env, email)
        login(api.client, email)  # no second upgrade: the hash already has these parameters
        assert _stored_hash(authnode_env, email) == new_hash

    assert new_hash != old_hash
    assert f"$argon2id$v=19${RAISED_PARAMS}$" in new_hash
    assert _verifies(new_hash, PASSWORD) and not _verifies(new_hash, "not " + PASSWORD)


def test_email_address_limit_drops_extra_emails_with_the_same_answer(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(EMAIL_ADDRESS_LIMIT="1/1h")
    email, unknown = unique_email("limited"), unique_email("nobody")
    with running(env, "all") as node:
        client = node.client
        register(client, email)  # its verification email: the one of that kind this hour
        # Two more verification emails asked for while the sign-up is pending; the unknown
        # address gets the same answers, and nothing.
        answers = {"/v1/auth/verify-email/resend": (
            [client.post("/v1/auth/verify-email/resend", json={"email": email})
             for _ in range(2)],
            client.post("/v1/auth/verify-email/resend", json={"email": unknown}))}
        wait_email_jobs_settled(env)
        verify(client, verification_token(smtp, email))  # an account now: resets apply
        # Three reset emails asked for: the first is the one of its kind this hour.
        answers["/v1/auth/password/forgot"] = (
            [client.post("/v1/auth/password/forgot", json={"email": email})
             for _ in range(3)],
            client.post("/v1/auth/password/forgot", json={"email": unknown}))
        wait_email_jobs_settled(env)
        skipped = node.logs().count("skipped:address_rate_limited")

    for path, (known, other) in answers.items():
        assert all(r.status_code == 202 for r in known), (path, [describe(r) for r in known])
        assert {r.content for r in known} == {other.content}, path
        assert other.status_code == 202
    subjects = sorted(m.subject for m in smtp.messages(email))
    assert subjects == sorted([VERIFY_SUBJECT, RESET_SUBJECT]), subjects
    assert smtp.messages(unknown) == []
    assert skipped == 4, skipped


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_link_pages_redirect_to_the_configured_urls(authnode_env: AuthnodeEnv,
                                                     smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(VERIFY_REDIRECT_URL=VERIFY_REDIRECT,
                                      RESET_REDIRECT_URL=RESET_REDIRECT)
    email = unique_email("redirect")
    with running(env, "all") as node:
        client = node.client
        register(client, email)
        token = verification_token(smtp, email)
        # Opening the link only shows the confirm button; pressing it (the form's POST)
        # confirms and redirects.
        shown = httpx.get(f"{node.url}/verify-email", params={"token": token})
        assert shown.status_code == 200, describe(shown)
        page = httpx.post(f"{node.url}/verify-email", data={"token": token})
        again = httpx.post(f"{node.url}/verify-email", data={"token": token})
        forgot = client.post("/v1/auth/password/forgot", json={"email": email})
        assert forgot.status_code == 202, describe(forgot)
        reset = reset_token(smtp, email)
        reset_page = httpx.get(f"{node.url}/reset-password", params={"token": reset})
        login(client, email)  # verified by the page that redirected

    for response, status in ((page, "verified"), (again, "invalid")):
        assert response.status_code == 303, describe(response)
        location = urlsplit(response.headers["location"])
        assert (location.scheme, location.netloc, location.path) == ("https", "app.example.test",
                                                                      "/welcome")
        assert parse_qs(location.query) == {"from": ["mail"], "status": [status]}
        assert response.headers["referrer-policy"] == "no-referrer"
    assert reset_page.status_code == 303, describe(reset_page)
    assert reset_page.headers["location"] == f"{RESET_REDIRECT}?token={reset}"

    # Control: without the settings the same links are pages of this service.
    with running(authnode_env, "all") as plain:
        fresh = unique_email("no-redirect")
        register(plain.client, fresh)
        own = httpx.get(f"{plain.url}/verify-email",
                        params={"token": verification_token(smtp, fresh)})
    assert own.status_code == 200 and "location" not in own.headers
    assert own.headers["content-type"].startswith("text/html")
