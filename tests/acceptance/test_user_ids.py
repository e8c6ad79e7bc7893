"""User ids are random and permanent: a new account never gets an old one's id, and
``authnode migrate`` keeps the ids of accounts made when ids were a keyed hash of the
address (their documents written here straight into FerretDB, the way that code did)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import argon2
import jwt
from pymongo import MongoClient

from tests.acceptance.test_accounts_support import (
    ALREADY_REGISTERED_SUBJECT,
    PASSWORD,
    assert_access_refused,
    assert_access_works,
    assert_error,
    assert_refresh_refused,
    bearer,
    describe,
    login,
    register,
    register_verified,
    running,
    verification_token,
    verify,
    wait_mail,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess, unique_email
from tests.services import SmtpRecorder


def _sub(access_token: str) -> str:
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return str(claims["sub"])


def test_an_address_registered_again_gets_a_new_id(authnode: AuthnodeProcess,
                                                   smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, first = register_verified(client, smtp, prefix="reused")
    old = login(client, email)
    assert _sub(old["access_token"]) == first["id"]
    assert len(first["id"]) == 32 and int(first["id"], 16) >= 0

    deleted = client.request("DELETE", "/v1/users/me", json={"password": PASSWORD},
                             headers=bearer(old["access_token"]))
    assert deleted.status_code == 204, describe(deleted)
    register(client, email)
    second = verify(client, verification_token(smtp, email, count=2))
    new = login(client, email)

    assert second["id"] != first["id"]
    assert _sub(new["access_token"]) == second["id"] != _sub(old["access_token"])
    assert assert_access_works(client, new["access_token"], "the new account")["id"] == \
        second["id"]
    assert_access_refused(client, old["access_token"], "the deleted account's token")
    assert_refresh_refused(client, old["refresh_token"], "the deleted account's token")


def _legacy_account(db: Any, key: bytes, email: str, *, verified: bool) -> str:
    """A user document as the code before random ids wrote it; returns its id."""
    user_id = hmac.new(key, email.encode(), hashlib.sha256).hexdigest()[:32]
    now = datetime.now(UTC) - timedelta(days=30)
    db["users"].insert_one({
        "_id": user_id, "email": email, "name": "Old Timer",
        "password_hash": argon2.PasswordHasher(memory_cost=19456, time_cost=2,
                                               parallelism=1).hash(PASSWORD),
        "email_verified": verified, "disabled": False, "credential_version": 1,
        "created_at": now, "updated_at": now})
    return user_id


def test_migrate_keeps_the_ids_of_existing_accounts(authnode_env: AuthnodeEnv,
                                                    smtp: SmtpRecorder) -> None:
    verified, pending = unique_email("old"), unique_email("old-unverified")
    legacy_link = secrets.token_urlsafe(32)
    with MongoClient(authnode_env.variables["MONGODB_URI"],
                     serverSelectionTimeoutMS=5000) as mongo:
        db = mongo.get_default_database()
        key = bytes(db["meta"].find_one({"_id": "user_id_key"})["key"])
        verified_id = _legacy_account(db, key, verified, verified=True)
        pending_id = _legacy_account(db, key, pending, verified=False)
        now = datetime.now(UTC)
        db["email_tokens"].insert_one({  # a link that code had sent, still unused
            "_id": hashlib.sha256(legacy_link.encode()).hexdigest(), "kind": "verify_email",
            "user_id": pending_id, "credential_version": 1, "created_at": now,
            "expires_at": now + timedelta(days=1), "used_at": None})

    for attempt in ("first", "again"):
        result = authnode_env.run("migrate")
        assert result.returncode == 0, result.stderr
        created = 2 if attempt == "first" else 0
        assert f"mongodb: address lookups created for {created} existing accounts" in \
            result.stdout.splitlines(), result.stdout

    with running(authnode_env) as process:
        client = process.client
        tokens = login(client, verified)
        assert tokens["user"]["id"] == verified_id == _sub(tokens["access_token"])
        assert assert_access_works(client, tokens["access_token"], "old account")["id"] == \
            verified_id

        # The unverified one: "verify first", and its old link still verifies it.
        assert_error(client.post("/v1/auth/login", json={"email": pending, "password": PASSWORD}),
                     403, "email_not_verified")
        assert verify(client, legacy_link)["id"] == pending_id
        assert login(client, pending)["user"]["id"] == pending_id

        # The address is taken: registering it again only brings a notice.
        register(client, verified, "somebody else's passphrase")
        wait_mail(smtp, verified, ALREADY_REGISTERED_SUBJECT)
        assert login(client, verified)["user"]["id"] == verified_id
