"""Operator commands (`authnode users|jobs|keys …`) against a running deployment."""

from __future__ import annotations

import base64
import json

from tests.acceptance.test_accounts_support import (
    PASSWORD,
    assert_access_refused,
    assert_access_works,
    assert_error,
    login,
    register_verified,
    wait_mail,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder, wait_until


def admin(env: AuthnodeEnv, *args: str) -> dict:
    result = env.run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_disable_ends_sessions_at_once_and_enable_allows_login(
        authnode: AuthnodeProcess, authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    tokens = login(client, email)

    shown = admin(authnode_env, "users", "show", email)
    assert shown["email"] == email and shown["live_sessions"] == 1 and not shown["disabled"]

    disabled = admin(authnode_env, "users", "disable", email)
    assert disabled["disabled"] is True and disabled["live_sessions"] == 0
    assert_access_refused(client, tokens["access_token"], "disabled account")
    refused = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_error(refused, 403, "account_disabled")

    assert admin(authnode_env, "users", "enable", email)["disabled"] is False
    assert_access_works(client, login(client, email)["access_token"], "enabled again")


def test_delete_removes_the_account(authnode: AuthnodeProcess, authnode_env: AuthnodeEnv,
                                    smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    tokens = login(client, email)
    assert admin(authnode_env, "users", "delete", email)["deleted"] is True
    assert_access_refused(client, tokens["access_token"], "deleted account")
    assert_error(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
                 401, "invalid_credentials")
    missing = authnode_env.run("users", "show", email)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "authnode: No account has this email address."


def test_failed_email_job_is_listed_and_retried(authnode_env: AuthnodeEnv,
                                                smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(EMAIL_MAX_ATTEMPTS="1")
    process = env.start("all")
    try:
        smtp.failure = "554 5.7.1 refused for this test"
        email = "retry-me@example.com"
        response = process.client.post("/v1/auth/register",
                                        json={"email": email, "password": PASSWORD})
        assert response.status_code == 202

        def failed_jobs() -> list[dict]:
            return [job for job in admin(env, "jobs", "list", "--status", "failed")
                    if job["task"] == "authnode.send_email"]

        failed = wait_until(failed_jobs, 20, "the email job to fail")
        smtp.failure = None
        piped = env.run("jobs", "retry", str(failed[0]["id"]))
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout.strip().startswith(f"job {failed[0]['id']}: requeued as job ")
        assert "retrying" not in piped.stdout  # no progress bar when piped
        wait_mail(smtp, email, "Verify your email address")
        assert not failed_jobs() or all(job["id"] == failed[0]["id"] for job in failed_jobs())
    finally:
        smtp.failure = None
        assert process.stop() == 0, process.logs()


def test_key_rotation_keeps_old_tokens_valid(authnode: AuthnodeProcess,
                                             authnode_env: AuthnodeEnv,
                                             smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    old_token = login(client, email)["access_token"]
    before = {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}

    rotated = admin(authnode_env, "keys", "rotate")
    assert rotated["kid"] not in before and len(rotated["published"]) == 2

    # Instances re-read the key ring every 5 s; a process started now signs with it.
    fresh = authnode_env.start("api")
    try:
        jwks = fresh.client.get("/.well-known/jwks.json").json()["keys"]
        assert {key["kid"] for key in jwks} == set(rotated["published"])
        assert_access_works(fresh.client, old_token, "signed by the previous key")
        new_token = login(fresh.client, email)["access_token"]
        header = json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))
        assert header["kid"] == rotated["kid"]
        # The first instance has not re-read the ring yet: an unknown kid makes it look.
        assert_access_works(client, new_token, "the first instance verifies the new key")
    finally:
        assert fresh.stop() == 0
