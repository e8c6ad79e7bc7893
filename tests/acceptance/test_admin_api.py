"""The admin API over HTTP, in both Redis modes: keys and scopes, paging that never stops
silently, every admin action in the audit log with its actor, a user's own activity."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pymongo import MongoClient

from authnode.repositories.records import User
from authnode.repositories.users import user_to_document
from tests.acceptance.test_accounts_support import (
    assert_error,
    bearer,
    describe,
    login,
    register_verified,
    running,
    wait_mail,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder, wait_until

AUDIT_WAIT_S = 10.0


def create_key(env: AuthnodeEnv, name: str, *scopes: str) -> dict[str, Any]:
    args = ["admin-keys", "create", "--name", name, "--json"]
    for scope in scopes:
        args += ["--scope", scope]
    result = env.run(*args)
    assert result.returncode == 0, result.stderr
    created: dict[str, Any] = json.loads(result.stdout)
    assert created["key"].startswith("ak_") and created["name"] == name
    return created


def events_of(client: httpx.Client, key: str, **query: str) -> list[dict[str, Any]]:
    response = client.get("/v1/admin/audit", headers=bearer(key), params=query)
    assert response.status_code == 200, describe(response)
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def test_keys_and_scopes(authnode: AuthnodeProcess, authnode_env: AuthnodeEnv,
                         smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, user = register_verified(client, smtp)
    tokens = login(client, email)
    reader = create_key(authnode_env, "reader", "users:read")

    found = client.get("/v1/admin/users", headers=bearer(reader["key"]),
                       params={"email": email.upper()})
    assert found.status_code == 200, describe(found)
    assert [u["id"] for u in found.json()["users"]] == [user["id"]]
    assert found.json()["next_cursor"] is None
    detail = client.get(f"/v1/admin/users/{user['id']}", headers=bearer(reader["key"]))
    assert detail.status_code == 200, describe(detail)
    shown = detail.json()
    assert shown["email"] == email and shown["disabled"] is False
    assert shown["live_sessions"] == 1 and shown["last_login_at"] is not None
    assert shown["mfa"] == {"totp": False, "webauthn": 0, "recovery_codes_left": 0}

    # A key without the scope, a user's token, an unknown key: refused.
    assert_error(client.post(f"/v1/admin/users/{user['id']}/disable",
                             headers=bearer(reader["key"])), 403, "insufficient_scope")
    assert_error(client.get("/v1/admin/users", headers=bearer(tokens["access_token"])),
                 401, "invalid_token")
    assert_error(client.get("/v1/users/me", headers=bearer(reader["key"])), 401, "invalid_token")
    forged = reader["key"][:-4] + "AAAA"
    assert_error(client.get("/v1/admin/users", headers=bearer(forged)), 401, "invalid_token")
    assert_error(client.get("/v1/admin/users"), 401, "invalid_token")
    assert_error(client.get(f"/v1/admin/users/{'0' * 32}", headers=bearer(reader["key"])),
                 404, "not_found")
    assert_error(client.get("/v1/admin/users", headers=bearer(reader["key"]),
                            params={"limit": "201"}), 422, "invalid_request")
    assert_error(client.get("/v1/admin/users", headers=bearer(reader["key"]),
                            params={"sort": "email"}), 422, "invalid_request")

    # A revoked key is refused at once, by every instance.
    with running(authnode_env, "api") as second:
        assert second.client.get("/v1/admin/users", headers=bearer(reader["key"])
                                 ).status_code == 200
        revoked = authnode_env.run("admin-keys", "revoke", reader["id"])
        assert revoked.returncode == 0, revoked.stderr
        for process in (authnode, second):
            assert_error(process.client.get("/v1/admin/users", headers=bearer(reader["key"])),
                         401, "invalid_token")
    listed = json.loads(authnode_env.run("admin-keys", "list", "--json").stdout)
    assert [(k["id"], k["revoked_at"] is not None) for k in listed] == [(reader["id"], True)]
    assert "key" not in listed[0], "the key itself is never shown again"


def test_paging_over_450_users_returns_each_once(authnode: AuthnodeProcess,
                                                 authnode_env: AuthnodeEnv) -> None:
    now = datetime.now(UTC)
    tag = secrets.token_hex(3)
    made = [User(id=secrets.token_hex(16), email=f"page-{tag}-{i:03d}@example.com",
                 name=None, password_hash="$argon2id$unused", email_verified=True,
                 disabled=False, credential_version=1, created_at=now + timedelta(seconds=i),
                 updated_at=now) for i in range(450)]
    mongo: MongoClient[dict[str, Any]] = MongoClient(authnode_env.variables["MONGODB_URI"])
    try:
        mongo.get_default_database()["users"].insert_many([user_to_document(u) for u in made])
    finally:
        mongo.close()
    key = create_key(authnode_env, "pager", "users:read")["key"]
    client = authnode.client

    def all_pages(**query: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            params = {**query, "limit": "200", **({"cursor": cursor} if cursor else {})}
            response = client.get("/v1/admin/users", headers=bearer(key), params=params)
            assert response.status_code == 200, describe(response)
            body = response.json()
            assert len(body["users"]) <= 200
            seen += [u["email"] for u in body["users"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return seen

    everyone = all_pages(email_prefix=f"page-{tag}-")
    assert sorted(everyone) == sorted(u.email for u in made)
    assert len(set(everyone)) == 450
    later = all_pages(email_prefix=f"page-{tag}-",
                      created_after=(now + timedelta(seconds=399.5)).isoformat())
    assert sorted(later) == [f"page-{tag}-{i:03d}@example.com" for i in range(400, 450)]


def test_every_admin_action_is_audited_with_its_actor(
        authnode: AuthnodeProcess, authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, user = register_verified(client, smtp)
    tokens = login(client, email)
    key = create_key(authnode_env, "support-bot", "users:read", "users:write",
                     "sessions:write", "audit:read")["key"]
    base = f"/v1/admin/users/{user['id']}"

    # A lockout from wrong passwords, cleared by support.
    for _ in range(3):
        client.post("/v1/auth/login", json={"email": email, "password": "wrong guess 1"})
    for action in ("disable", "enable", "unlock", "password-reset", "mfa-reset"):
        response = client.post(f"{base}/{action}", headers=bearer(key))
        assert response.status_code == 200, describe(response)
    assert_error(client.get("/v1/users/me", headers=bearer(tokens["access_token"])),
                 401, "invalid_token"), "disabling ended the session"
    wait_mail(smtp, email, "Reset your password")
    fresh = login(client, email)
    revoked = client.post(f"{base}/sessions/revoke", headers=bearer(key), json={})
    assert revoked.status_code == 200 and revoked.json()["live_sessions"] == 0
    assert_error(client.get("/v1/users/me", headers=bearer(fresh["access_token"])),
                 401, "invalid_token")
    gone = client.delete(base, headers=bearer(key))
    assert gone.status_code == 204, describe(gone)
    assert_error(client.get(base, headers=bearer(key)), 404, "not_found")

    expected = {"user.disabled", "user.enabled", "user.unlocked", "password.reset_sent",
                "mfa.reset", "sessions.ended_all", "user.deleted"}

    def audited() -> list[dict[str, Any]]:
        found = [e for e in events_of(client, key, user_id=user["id"])
                 if e["actor"] == "admin:support-bot"]
        return found if expected <= {e["event"] for e in found} else []

    events = wait_until(audited, AUDIT_WAIT_S, "every admin action in the audit log")
    assert all(e["ip"] and e["request_id"] for e in events), events
    failures = events_of(client, key, user_id=user["id"], event="login.failed")
    assert len(failures) == 3 and all(e["actor"] == "user" for e in failures)
    assert all(e["outcome"] == "wrong_password" for e in failures)
    assert all("password" not in json.dumps(e).replace("wrong_password", "")
               for e in failures), "no secret in the log"


def test_a_user_sees_their_own_activity(authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, user = register_verified(client, smtp)
    client.post("/v1/auth/login", json={"email": email, "password": "not it at all"})
    tokens = login(client, email, user_agent="activity-test/1.0")

    def seen() -> list[dict[str, Any]]:
        response = client.get("/v1/users/me/activity", headers=bearer(tokens["access_token"]))
        assert response.status_code == 200, describe(response)
        events: list[dict[str, Any]] = response.json()["events"]
        names = [e["event"] for e in events]
        return events if {"login.failed", "login.succeeded", "user.email_verified"} <= set(
            names) else []

    events = wait_until(seen, AUDIT_WAIT_S, "the user's own login events")
    assert all(e["user_id"] == user["id"] for e in events)
    succeeded = next(e for e in events if e["event"] == "login.succeeded")
    assert succeeded["user_agent"] == "activity-test/1.0" and succeeded["ip"]
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)



def test_each_key_is_rate_limited(authnode_env: AuthnodeEnv) -> None:
    env = authnode_env.with_overrides(ADMIN_KEY_LIMIT="3/1m")
    first = create_key(env, "busy", "users:read")["key"]
    second = create_key(env, "other", "users:read")["key"]
    with running(env, "api") as process:
        for _ in range(3):
            assert process.client.get("/v1/admin/users", headers=bearer(first)
                                      ).status_code == 200
        limited = process.client.get("/v1/admin/users", headers=bearer(first))
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) > 0
        assert process.client.get("/v1/admin/users", headers=bearer(second)
                                  ).status_code == 200, "another key has its own limit"
