"""The stored shape of each record, field for field and in order, as the versions before
typed records wrote it: existing data, and tools that read the collections directly,
depend on it. Reading a document back gives the record it was written from, and a
document of an older version (fields missing) reads as the domain always took it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from authnode.repositories.email_tokens import email_token_from_document, email_token_to_document
from authnode.repositories.records import EmailToken, Registration, Session, User
from authnode.repositories.registrations import (
    registration_from_document,
    registration_to_document,
)
from authnode.repositories.sessions import session_from_document, session_to_document
from authnode.repositories.users import user_from_document, user_to_document

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)


def test_a_new_account() -> None:
    user = User(id="a" * 32, email="ada@example.com", name="Ada", password_hash="$argon2id$x",
                email_verified=True, disabled=False, credential_version=1, created_at=NOW,
                updated_at=NOW)
    document = user_to_document(user)
    assert list(document.items()) == [
        ("_id", "a" * 32), ("email", "ada@example.com"), ("name", "Ada"),
        ("password_hash", "$argon2id$x"), ("email_verified", True), ("disabled", False),
        ("credential_version", 1), ("created_at", NOW), ("updated_at", NOW)]
    assert user_from_document(document) == user


def test_an_account_after_a_password_change_and_an_old_one() -> None:
    changed = {"_id": "u", "email": "e@example.com", "name": None, "password_hash": "h",
               "email_verified": True, "disabled": False, "credential_version": 3,
               "created_at": NOW, "updated_at": LATER, "password_changed_at": LATER}
    assert user_to_document(user_from_document(changed)) == changed
    old = user_from_document({"_id": "u", "email": "e@example.com", "password_hash": "h"})
    assert (old.name, old.email_verified, old.disabled, old.credential_version,
            old.created_at, old.password_changed_at) == (None, False, False, 1, None, None)


def test_a_new_session() -> None:
    session = Session(id="s", user_id="u", refresh_hash="h0", previous_hash=None,
                      rotation_nonce=None, rotated_at=None, spent=(), created_at=NOW,
                      last_used_at=NOW, expires_at=LATER, user_agent="curl", ip="10.0.0.1",
                      revoked_at=None)
    document = session_to_document(session)
    assert list(document.items()) == [
        ("_id", "s"), ("user_id", "u"), ("refresh_hash", "h0"), ("previous_hash", None),
        ("rotation_nonce", None), ("rotated_at", None), ("spent", []), ("created_at", NOW),
        ("last_used_at", NOW), ("expires_at", LATER), ("user_agent", "curl"),
        ("ip", "10.0.0.1"), ("revoked_at", None)]
    assert session_from_document(document) == session


def test_a_session_read_without_its_spent_tokens() -> None:
    document = session_to_document(Session(
        id="s", user_id="u", refresh_hash="h1", previous_hash="h0", rotation_nonce="n",
        rotated_at=NOW, spent=("p0",), created_at=NOW, last_used_at=NOW, expires_at=LATER,
        user_agent="", ip="", revoked_at=None, credentials_at=NOW))
    assert document["spent"] == ["p0"] and document["credentials_at"] == NOW
    del document["spent"]  # the projection of listings
    read = session_from_document(document)
    assert read.spent is None and not read.spent_earlier("p0" + "x" * 48)


def test_links_for_a_registration_and_for_an_account() -> None:
    for_registration = EmailToken(id="t1", kind="verify_email", created_at=NOW,
                                  expires_at=LATER, registration_id="r")
    document = email_token_to_document(for_registration)
    assert list(document.items()) == [
        ("_id", "t1"), ("kind", "verify_email"), ("created_at", NOW), ("expires_at", LATER),
        ("used_at", None), ("registration_id", "r")]
    assert email_token_from_document(document) == for_registration
    for_account = EmailToken(id="t2", kind="password_reset", created_at=NOW,
                             expires_at=LATER, user_id="u", credential_version=2)
    document = email_token_to_document(for_account)
    assert list(document.items()) == [
        ("_id", "t2"), ("kind", "password_reset"), ("created_at", NOW), ("expires_at", LATER),
        ("used_at", None), ("user_id", "u"), ("credential_version", 2)]
    assert email_token_from_document(document) == for_account


def test_a_registration() -> None:
    registration = Registration(id="r", email="ada@example.com", name=None, password_hash="h",
                                created_at=NOW, expires_at=LATER)
    document = registration_to_document(registration)
    assert list(document.items()) == [
        ("_id", "r"), ("email", "ada@example.com"), ("name", None), ("password_hash", "h"),
        ("created_at", NOW), ("expires_at", LATER)]
    assert registration_from_document(document) == registration
