"""The log of a real ``authnode serve --role all`` over a whole account flow: every line is
JSON with the request and job fields, X-Request-ID round-trips, and no secret (password,
access token, refresh token, email-link token) and no email address ever appears in it.

It runs in both Redis modes: the Redis client's own errors and retries (MOVED, a
failover) are logged too, and they differ between a single node and a cluster.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

from authnode.mfa import totp
from tests.acceptance.test_accounts_support import (
    NEW_PASSWORD,
    OTHER_PASSWORD,
    PASSWORD,
    RESET_SUBJECT,
    VERIFY_SUBJECT,
    bearer,
    describe,
    login,
    refresh,
    register,
    register_verified,
    running,
    wait_email_jobs_settled,
    wait_mail,
)
from tests.acceptance.test_admin_api import create_key
from tests.acceptance.test_mfa import enroll_totp, finish, mfa_required
from tests.harness import AuthnodeEnv, unique_email
from tests.services import RecordedMessage, SmtpRecorder, wait_until

REQUEST_FIELDS = {"time", "level", "request_id", "method", "route", "status", "duration_ms",
                  "instance"}
JOB_FIELDS = {"time", "level", "instance", "task", "job_id", "attempt", "outcome",
              "duration_ms"}
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_GENERATED_ID = re.compile(r"[0-9a-f]{16}")


def link(message: RecordedMessage, path: str) -> tuple[str, str]:
    """(path?query, token) of the first link to ``path`` in an email."""
    for url in message.links():
        parts = urlsplit(url)
        if parts.path == path:
            token = dict(p.split("=", 1) for p in parts.query.split("&"))["token"]
            return f"{parts.path}?{parts.query}", token
    raise AssertionError(f"no {path} link in {message.subject!r}")


def parse_log(text: str) -> list[dict[str, Any]]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            line = json.loads(raw)
        except ValueError:
            raise AssertionError(f"log line {number} is not JSON: {raw[:300]!r}") from None
        assert isinstance(line, dict), raw
        lines.append(line)
    return lines


def test_whole_account_flow_logs_no_secret(authnode_env: AuthnodeEnv,
                                           smtp: SmtpRecorder) -> None:
    secrets: dict[str, str] = {}
    email = unique_email("logs")
    with running(authnode_env, "all") as node:
        client = node.client
        # A refused weak password and a wrong one are secrets too.
        weak = client.post("/v1/auth/register", json={"email": email, "password": "Zq7!kx"})
        assert weak.status_code == 422, describe(weak)
        secrets["weak password"] = "Zq7!kx"
        register(client, email, PASSWORD, name="Logan")
        secrets["password"] = PASSWORD

        # Verify by following the emailed link, as a browser would (token in the query),
        # and pressing the page's button (the token in a form body).
        verify_path, secrets["verify token"] = link(wait_mail(smtp, email, VERIFY_SUBJECT),
                                                    "/verify-email")
        page = client.get(verify_path)
        assert page.status_code == 200, describe(page)
        confirmed = client.post("/verify-email", data={"token": secrets["verify token"]})
        assert confirmed.status_code == 200, describe(confirmed)

        wrong = client.post("/v1/auth/login",
                            json={"email": email, "password": "not-the-password-42"})
        assert wrong.status_code == 401, describe(wrong)
        secrets["wrong password"] = "not-the-password-42"
        tokens = login(client, email)
        secrets["access token"] = tokens["access_token"]
        secrets["refresh token"] = tokens["refresh_token"]

        me = client.get("/v1/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200, describe(me)
        renewed = refresh(client, tokens["refresh_token"])
        secrets["access token (refreshed)"] = renewed["access_token"]
        secrets["refresh token (refreshed)"] = renewed["refresh_token"]

        changed = client.post("/v1/auth/password/change",
                              headers=bearer(renewed["access_token"]),
                              json={"current_password": PASSWORD,
                                    "new_password": NEW_PASSWORD})
        assert changed.status_code == 204, describe(changed)
        secrets["new password"] = NEW_PASSWORD

        forgot = client.post("/v1/auth/password/forgot", json={"email": email})
        assert forgot.status_code == 202, describe(forgot)
        reset_path, secrets["reset token"] = link(wait_mail(smtp, email, RESET_SUBJECT),
                                                  "/reset-password")
        form = client.get(reset_path)  # the form page, token in the query
        assert form.status_code == 200, describe(form)
        reset = client.post("/reset-password",
                            data={"token": secrets["reset token"], "password": OTHER_PASSWORD})
        assert reset.status_code == 200, describe(reset)
        secrets["reset password"] = OTHER_PASSWORD

        final = login(client, email, OTHER_PASSWORD)
        secrets["access token (final)"] = final["access_token"]
        secrets["refresh token (final)"] = final["refresh_token"]
        out = client.post("/v1/auth/logout", headers=bearer(final["access_token"]))
        assert out.status_code == 204, describe(out)
        last = login(client, email, OTHER_PASSWORD)
        secrets["access token (last)"] = last["access_token"]
        secrets["refresh token (last)"] = last["refresh_token"]
        deleted = client.request("DELETE", "/v1/users/me", headers=bearer(last["access_token"]),
                                 json={"password": OTHER_PASSWORD})
        assert deleted.status_code == 204, describe(deleted)

        # Second factors and the admin API: the TOTP seed, recovery codes, the mfa_token,
        # codes and an admin key are secrets too.
        second_email, _ = register_verified(client, smtp, prefix="logs-mfa")
        second = login(client, second_email)
        secret, codes = enroll_totp(client, second["access_token"], step_offset=1)
        secrets["totp seed"] = secret
        secrets.update({f"recovery code {i}": code for i, code in enumerate(codes)})
        secrets["mfa token"] = mfa_required(client, second_email, ["totp", "recovery_code"])
        secrets["wrong code"] = "000000" if totp.code_at(secret, time.time()) != "000000" \
            else "111111"
        assert finish(client, secrets["mfa token"], secrets["wrong code"]).status_code == 400
        assert finish(client, secrets["mfa token"], codes[0]).status_code == 200
        admin_key = create_key(authnode_env, "log-check", "users:read")["key"]
        secrets["admin key"] = admin_key
        found = client.get("/v1/admin/users", headers=bearer(admin_key),
                           params={"email": second_email})
        assert found.status_code == 200, describe(found)

        # X-Request-ID: a printable one of <= 128 characters is kept and returned...
        given = "trace-7f3a9c/" + "x" * 100
        echoed = client.get("/healthz", headers={"X-Request-ID": given})
        assert echoed.headers["x-request-id"] == given
        # ...anything else (too long, not printable, absent) is replaced by a fresh id.
        too_long = "y" * 129
        replaced = [client.get("/healthz", headers={"X-Request-ID": too_long}),
                    client.get("/healthz", headers={"X-Request-ID": "bad\tid"}),
                    client.get("/healthz")]
        generated = [r.headers["x-request-id"] for r in replaced]
        for value in generated:
            assert _GENERATED_ID.fullmatch(value), generated
        assert len(set(generated)) == 3
        wait_email_jobs_settled(authnode_env)
    text = node.logs()

    lines = parse_log(text)
    for name, value in secrets.items():
        assert value not in text, f"the {name} appears in the log"
    for name in ("access token", "refresh token", "access token (last)"):
        # Not even a recognisable part of a token (a JWT's signature, a refresh token's tail).
        fragment = secrets[name].rsplit(".", 1)[-1][-24:]
        assert fragment not in text, f"part of the {name} appears in the log"
    # No email address either, not even its unique local part.
    local = email.split("@")[0]
    assert local not in text and email not in text, "the email address appears in the log"
    assert second_email.split("@")[0] not in text, "the email address appears in the log"
    assert "Logan" not in text, "the display name appears in the log"

    requests = [line for line in lines if line.get("message") == "request"]
    jobs = [line for line in lines if line.get("message") == "job"]
    assert len(requests) >= 20, len(requests)
    for line in requests:
        missing = REQUEST_FIELDS - set(line)
        assert not missing, f"request line without {missing}: {line}"
        assert _TIME.fullmatch(line["time"]), line
        assert line["level"] == "info"
        assert line["route"] == "unmatched" or line["route"].startswith("/"), line
        assert "?" not in line["route"], line
        assert isinstance(line["status"], int) and isinstance(line["duration_ms"], float | int)
    routes = {line["route"] for line in requests}
    assert {"/verify-email", "/reset-password", "/v1/auth/login", "/v1/users/me",
            "/v1/auth/refresh", "/v1/auth/password/change", "/v1/auth/password/forgot",
            "/v1/auth/logout", "/healthz"} <= routes, routes
    # verify, password changed (x2: change and reset), reset: at least four email jobs.
    assert len(jobs) >= 4, jobs
    for line in jobs:
        missing = JOB_FIELDS - set(line)
        assert not missing, f"job line without {missing}: {line}"
        assert line["task"] == "authnode.send_email" and line["outcome"] == "sent", line
        assert line["attempt"] == 1
    # The request ids: the one given, and each generated one, on their request lines.
    logged_ids = [line["request_id"] for line in requests]
    assert given in logged_ids
    assert set(generated) <= set(logged_ids)
    assert too_long not in text


def test_a_failing_email_job_logs_no_address(authnode_env: AuthnodeEnv,
                                             smtp: SmtpRecorder) -> None:
    """The SMTP server refuses every message: the job is retried, then fails for good. The
    job lines say so, and neither they nor procrastinate's own error line name the address."""
    env = authnode_env.with_overrides(EMAIL_MAX_ATTEMPTS="2")
    email = unique_email("bounce")
    smtp.failure = "451 4.3.0 try again later"
    with running(env, "all") as node:
        register(node.client, email, PASSWORD)

        def failed_for_good() -> bool:
            outcomes = [line.get("outcome") for line in parse_log(node.logs())
                        if line.get("message") == "job"]
            return outcomes == ["retried", "failed"]

        wait_until(failed_for_good, 30, "the email job to be retried, then to fail")
    smtp.failure = None
    text = node.logs()
    lines = parse_log(text)
    assert email.split("@")[0] not in text, "the email address appears in the log"
    assert PASSWORD not in text
    # procrastinate's own line for the final failure is kept, named by task and job id.
    errors = [line for line in lines if line["logger"].startswith("procrastinate")
              and line["level"] == "error"]
    assert [(e["message"], e["task"]) for e in errors] == [
        ("procrastinate job_error", "authnode.send_email")], errors
    assert isinstance(errors[0]["job_id"], int)
