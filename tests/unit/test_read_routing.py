"""The read/write split: which MongoDB handle each repository read goes to.

Reads that tolerate replica lag (a profile on a cache miss, the session list) use the
``secondaryPreferred`` handle; the login, refresh and revocation paths and every write use
the primary. Checked two ways: the read preference of each repository's collections
(real pymongo handles, never connected), and which collection each method actually uses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import ReadPreference

from authnode.clients.mongo import MongoHandles, create_mongo
from authnode.repositories.email_tokens import EmailTokenRepository
from authnode.repositories.sent_emails import SentEmailRepository
from authnode.repositories.sessions import SessionRepository
from authnode.repositories.signing_keys import SigningKeyRepository
from authnode.repositories.users import UserRepository
from authnode.settings import load_settings
from authnode.tuning import HostResources

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def mongo() -> MongoHandles:
    settings = load_settings({"MONGODB_URI": "mongodb://127.0.0.1:9/split_test"},
                             host=HostResources(cpus=2, memory_bytes=4 << 30))
    return create_mongo(settings)  # connect=False: nothing is opened


def test_the_handles_read_preferences(mongo: MongoHandles) -> None:
    assert mongo.primary.read_preference == ReadPreference.PRIMARY
    assert mongo.replica.read_preference == ReadPreference.SECONDARY_PREFERRED


def test_repositories_choose_in_one_place(mongo: MongoHandles) -> None:
    users, sessions = UserRepository(mongo), SessionRepository(mongo)
    for repository in (users, sessions):
        assert repository._fresh.read_preference == ReadPreference.PRIMARY
        assert repository._lagging.read_preference == ReadPreference.SECONDARY_PREFERRED
    for fresh_only in (EmailTokenRepository(mongo), SentEmailRepository(mongo)):
        assert fresh_only._fresh.read_preference == ReadPreference.PRIMARY
        assert not hasattr(fresh_only, "_lagging")
    signing = SigningKeyRepository(mongo.replica)  # even given a lagging database
    assert signing._keys.read_preference == ReadPreference.PRIMARY


class _Cursor:
    def sort(self, *args: Any) -> _Cursor:
        return self

    def limit(self, *args: Any) -> _Cursor:
        return self

    async def to_list(self) -> list[Any]:
        return []


class _Collection:
    """Records which handle a call reached; answers like an empty collection."""

    def __init__(self, handle: str, calls: list[tuple[str, str]]) -> None:
        self._handle = handle
        self._calls = calls

    def __getattr__(self, method: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((self._handle, method))
            return None

        return call

    def find(self, *args: Any, **kwargs: Any) -> _Cursor:
        self._calls.append((self._handle, "find"))
        return _Cursor()


class _Database:
    def __init__(self, handle: str, calls: list[tuple[str, str]]) -> None:
        self._handle = handle
        self._calls = calls

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(self._handle, self._calls)


def _handles(calls: list[tuple[str, str]]) -> MongoHandles:
    return MongoHandles(client=None, primary=_Database("primary", calls),  # type: ignore[arg-type]
                        replica=_Database("replica", calls))  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize(("call", "handle"), [
    # Lag-tolerant reads
    (lambda u, s: u.by_id_for_display("u1"), "replica"),
    (lambda u, s: s.active_for_user("u1", NOW), "replica"),
    # Login
    (lambda u, s: u.by_email("a@example.com"), "primary"),
    # Refresh
    (lambda u, s: s.rotate("s1", "h", new_hash="n", nonce="x", now=NOW), "primary"),
    (lambda u, s: s.by_id("s1"), "primary"),
    (lambda u, s: s.claim_rotation("s1", "h", NOW), "primary"),
    (lambda u, s: u.by_id("u1"), "primary"),
    # Revocation
    (lambda u, s: s.live_ids_for_user("u1", NOW), "primary"),
    (lambda u, s: s.revoke("s1", NOW), "primary"),
    (lambda u, s: s.ids_to_mark("u1", NOW, NOW), "primary"),
    (lambda u, s: s.confirm_credentials("s1", "u1", NOW), "primary"),
])
async def test_each_read_goes_to_its_handle(call: Any, handle: str) -> None:
    calls: list[tuple[str, str]] = []
    mongo = _handles(calls)
    await call(UserRepository(mongo, id_key=b"test"), SessionRepository(mongo))
    assert calls and {reached for reached, _ in calls} == {handle}, calls


@pytest.mark.parametrize("preference", ["secondaryPreferred", "secondary", "nearest"])
def test_a_read_preference_in_the_uri_never_reaches_the_write_path(preference: str) -> None:
    """``MONGODB_URI=...?readPreference=secondary`` sets the client's default; refresh,
    revocation and email-link reads must still go to the primary."""
    settings = load_settings(
        {"MONGODB_URI": f"mongodb://127.0.0.1:9/split_test?readPreference={preference}"},
        host=HostResources(cpus=2, memory_bytes=4 << 30))
    mongo = create_mongo(settings)
    assert mongo.client.read_preference.mongos_mode == preference  # the URI was honoured
    assert mongo.primary.read_preference == ReadPreference.PRIMARY
    for repository in (UserRepository(mongo), SessionRepository(mongo),
                       EmailTokenRepository(mongo), SentEmailRepository(mongo)):
        assert repository._fresh.read_preference == ReadPreference.PRIMARY, repository
    assert SigningKeyRepository(mongo.primary)._keys.read_preference == ReadPreference.PRIMARY
