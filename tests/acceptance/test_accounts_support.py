"""Helpers shared by the account acceptance tests (this module holds no tests).

Everything here talks to a real ``authnode serve`` over HTTP and reads the SMTP recorder;
nothing is mocked. Assertions name what a user of the API sees: status, JSON body, headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg

from tests.harness import AuthnodeEnv, AuthnodeProcess, link_token, unique_email
from tests.services import RecordedMessage, SmtpRecorder, wait_until

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "violet-tractor-29-quietly"
OTHER_PASSWORD = "amber otter 77 in the rain"

USER_KEYS = {"id", "email", "name", "email_verified", "created_at"}
MFA_KEYS = {"totp", "webauthn", "recovery_codes_left"}  # GET /v1/users/me only
TOKENS_KEYS = {"access_token", "token_type", "expires_in", "refresh_token", "user"}
SESSION_KEYS = {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}
ACCEPTED = {"status": "verification_sent"}

VERIFY_SUBJECT = "Verify your email address"
RESET_SUBJECT = "Reset your password"
ALREADY_REGISTERED_SUBJECT = "You already have an account"
PASSWORD_CHANGED_SUBJECT = "Your password was changed"

MAIL_TIMEOUT_S = 20.0
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def describe(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path} -> " \
           f"{response.status_code} {response.text[:500]!r}"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """``{"error": {"code", "message"}}`` with this status and code; returns the body."""
    assert response.status_code == status, describe(response)
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}, describe(response)
    assert body["error"]["code"] == code, describe(response)
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


def assert_user(user: Any, *, email: str | None = None, verified: bool | None = None) -> None:
    assert isinstance(user, dict) and set(user) == USER_KEYS, user
    assert isinstance(user["id"], str) and user["id"]
    assert user["name"] is None or isinstance(user["name"], str)
    assert isinstance(user["email_verified"], bool)
    assert isinstance(user["created_at"], str) and _ISO_UTC.fullmatch(user["created_at"]), user
    if email is not None:
        assert user["email"] == email, user
    if verified is not None:
        assert user["email_verified"] is verified, user


def assert_tokens(response: httpx.Response, *, email: str | None = None) -> dict[str, Any]:
    """A 200 TOKENS body; returns it."""
    assert response.status_code == 200, describe(response)
    tokens: dict[str, Any] = response.json()
    assert set(tokens) == TOKENS_KEYS, tokens
    assert tokens["token_type"] == "Bearer"
    assert isinstance(tokens["expires_in"], int) and tokens["expires_in"] > 0
    assert isinstance(tokens["access_token"], str) and tokens["access_token"].count(".") == 2
    assert isinstance(tokens["refresh_token"], str) and len(tokens["refresh_token"]) >= 43
    assert_user(tokens["user"], email=email, verified=True)
    assert response.headers.get("cache-control") == "no-store", response.headers
    return tokens


def assert_access_refused(client: httpx.Client, access_token: str, why: str) -> None:
    """GET /v1/users/me with this token: 401 invalid_token and a Bearer challenge."""
    response = client.get("/v1/users/me", headers=bearer(access_token))
    assert response.status_code == 401, f"{why}: access token still accepted: " \
                                        f"{describe(response)}"
    assert_error(response, 401, "invalid_token")
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.split(" ")[0].lower() == "bearer", (why, response.headers)


def assert_access_works(client: httpx.Client, access_token: str, why: str) -> dict[str, Any]:
    response = client.get("/v1/users/me", headers=bearer(access_token))
    assert response.status_code == 200, f"{why}: {describe(response)}"
    user: dict[str, Any] = response.json()
    assert set(user.pop("mfa")) == MFA_KEYS, why
    assert_user(user)
    return user


def assert_refresh_refused(client: httpx.Client, refresh_token: str, why: str) -> None:
    response = client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert response.status_code == 401, f"{why}: refresh token still accepted: " \
                                        f"{describe(response)}"
    assert_error(response, 401, "invalid_token")


def register(client: httpx.Client, email: str, password: str = PASSWORD,
             name: str | None = None) -> None:
    body: dict[str, Any] = {"email": email, "password": password}
    if name is not None:
        body["name"] = name
    response = client.post("/v1/auth/register", json=body)
    assert response.status_code == 202, describe(response)
    assert response.json() == ACCEPTED


def wait_mail(smtp: SmtpRecorder, to: str, subject: str, count: int = 1,
              timeout: float = MAIL_TIMEOUT_S) -> RecordedMessage:
    """The ``count``-th message (in arrival order) to ``to`` with this subject."""
    def arrived() -> list[RecordedMessage]:
        found = [m for m in smtp.messages(to) if m.subject == subject]
        return found if len(found) >= count else []

    def what() -> str:
        return (f"message #{count} {subject!r} to {to}; received: "
                f"{[(m.rcpt_tos, m.subject) for m in smtp.messages()]}")

    return wait_until(arrived, timeout, what)[count - 1]


def verification_token(smtp: SmtpRecorder, email: str, count: int = 1) -> str:
    return link_token(wait_mail(smtp, email, VERIFY_SUBJECT, count), "/verify-email")


def reset_token(smtp: SmtpRecorder, email: str, count: int = 1) -> str:
    return link_token(wait_mail(smtp, email, RESET_SUBJECT, count), "/reset-password")


def verify(client: httpx.Client, token: str) -> dict[str, Any]:
    response = client.post("/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 200, describe(response)
    body = response.json()
    assert set(body) == {"user"}, body
    assert_user(body["user"], verified=True)
    user: dict[str, Any] = body["user"]
    return user


def register_verified(client: httpx.Client, smtp: SmtpRecorder, email: str | None = None,
                      password: str = PASSWORD, name: str | None = None,
                      prefix: str = "user") -> tuple[str, dict[str, Any]]:
    """Register, read the link from the email, verify; returns (email, USER)."""
    email = email or unique_email(prefix)
    register(client, email, password, name)
    user = verify(client, verification_token(smtp, email))
    assert user["email"] == email
    return email, user


def login(client: httpx.Client, email: str, password: str = PASSWORD,
          user_agent: str | None = None) -> dict[str, Any]:
    headers = {"User-Agent": user_agent} if user_agent else {}
    response = client.post("/v1/auth/login", json={"email": email, "password": password},
                           headers=headers)
    return assert_tokens(response, email=email)


def refresh(client: httpx.Client, refresh_token: str) -> dict[str, Any]:
    return assert_tokens(client.post("/v1/auth/refresh", json={"refresh_token": refresh_token}))


@contextmanager
def running(env: AuthnodeEnv, role: str = "all", **start: Any) -> Iterator[AuthnodeProcess]:
    """``env.start(role, ...)`` for the block; then a clean stop (exit code 0)."""
    process = env.start(role, **start)
    try:
        yield process
    except BaseException as error:
        process.kill()
        error.add_note(f"--- authnode {role} log (tail) ---\n{process.logs()[-6000:]}")
        raise
    code = process.stop()
    assert code == 0, f"authnode {role} exited {code}:\n{process.logs()[-4000:]}"


def wait_email_jobs_settled(env: AuthnodeEnv, timeout: float = MAIL_TIMEOUT_S) -> None:
    """Wait until the worker has finished every queued email job (none left to do or in
    progress), so the absence of a message means "not sent", not "not sent yet"."""
    url = env.variables["POSTGRES_URL"]

    def settled() -> bool:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs "
                "WHERE queue_name = 'email' AND status IN ('todo', 'doing')").fetchone()
        return row is not None and row[0] == 0

    wait_until(settled, timeout, "every email job to be done")
