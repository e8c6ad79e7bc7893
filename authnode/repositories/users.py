"""The ``users`` collection: the only code that speaks MongoDB about accounts.

Read routing lives here, once: ``_fresh`` (the primary) serves the login, refresh and
revocation paths and every write; ``_lagging`` (``secondaryPreferred``) serves reads that
tolerate replica lag, such as showing a profile on a cache miss.

A user's ``_id`` is a keyed hash of the normalized email (the key is random per
deployment, kept in the ``meta`` collection). So finding an account by email is a lookup
by primary key, as fast for an unknown address as for a known one: a secondary index
would do the same on MongoDB, but FerretDB v1 scans the collection for it, which made a
login for an unknown address measurably slower (user enumeration by timing). It also
makes a registration one atomic insert that fails on a duplicate address, on a sharded
cluster too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from authnode.clients.mongo import Document, MongoHandles

COLLECTION = "users"
META_COLLECTION = "meta"
ID_KEY_DOCUMENT = "user_id_key"


class UserRepository:
    def __init__(self, mongo: MongoHandles, *, id_key: bytes | None = None) -> None:
        """``id_key`` is for tests; services call :meth:`load_id_key`."""
        self._fresh = mongo.primary[COLLECTION]
        self._lagging = mongo.replica[COLLECTION]
        self._meta = mongo.primary[META_COLLECTION]
        self._id_key = id_key

    async def load_id_key(self) -> None:
        """Read the deployment's user-id key, creating it on first start (racing
        instances: one insert wins, the others read the winner's)."""
        found = await self._meta.find_one({"_id": ID_KEY_DOCUMENT})
        if found is None:
            try:
                await self._meta.insert_one({"_id": ID_KEY_DOCUMENT,
                                             "key": secrets.token_bytes(32)})
            except DuplicateKeyError:
                pass
            found = await self._meta.find_one({"_id": ID_KEY_DOCUMENT})
        assert found is not None
        self._id_key = bytes(found["key"])

    def id_for_email(self, email: str) -> str:
        if self._id_key is None:
            raise RuntimeError("UserRepository.load_id_key() has not run")
        return hmac.new(self._id_key, email.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("email", unique=True, name="email_unique")

    async def insert(self, user: Document) -> bool:
        """Insert a new user; False when the email is taken (the unique index decides)."""
        try:
            await self._fresh.insert_one(user)
        except DuplicateKeyError:
            return False
        return True

    async def by_email(self, email: str) -> Document | None:
        return await self._fresh.find_one({"_id": self.id_for_email(email)})

    async def by_id(self, user_id: str) -> Document | None:
        return await self._fresh.find_one({"_id": user_id})

    async def by_id_for_display(self, user_id: str) -> Document | None:
        return await self._lagging.find_one({"_id": user_id})

    async def _update(self, query: dict[str, Any], update: dict[str, Any]) -> Document | None:
        return await self._fresh.find_one_and_update(
            query, update, return_document=ReturnDocument.AFTER)

    async def mark_verified(self, user_id: str, credential_version: int,
                            now: datetime) -> Document | None:
        """Verify the address, unless the password changed since the link was issued."""
        return await self._update(
            {"_id": user_id, "credential_version": credential_version},
            {"$set": {"email_verified": True, "updated_at": now}},
        )

    async def replace_unverified_password(self, email: str, password_hash: str,
                                          now: datetime) -> Document | None:
        """A second registration of a still-unverified address takes over its password;
        links sent before stop working (their credential_version no longer matches)."""
        return await self._update(
            {"_id": self.id_for_email(email), "email_verified": False},
            {"$set": {"password_hash": password_hash, "updated_at": now},
             "$inc": {"credential_version": 1}},
        )

    async def set_password(self, user_id: str, password_hash: str, now: datetime,
                           *, expected_hash: str | None = None,
                           expected_version: int | None = None,
                           verify_email: bool = False) -> Document | None:
        """Replace the password, only if it is still ``expected_hash`` and the credentials
        are still at ``expected_version`` (a reset link's), when given."""
        query: dict[str, Any] = {"_id": user_id}
        if expected_hash is not None:
            query["password_hash"] = expected_hash
        if expected_version is not None:
            query["credential_version"] = expected_version
        changes: dict[str, Any] = {"password_hash": password_hash, "updated_at": now,
                                   "password_changed_at": now}
        if verify_email:
            changes["email_verified"] = True
        return await self._update(query, {"$set": changes, "$inc": {"credential_version": 1}})

    async def rehash_password(self, user_id: str, old_hash: str, new_hash: str) -> None:
        """Upgrade the hash parameters; a no-op if the password changed meanwhile."""
        await self._fresh.update_one({"_id": user_id, "password_hash": old_hash},
                                     {"$set": {"password_hash": new_hash}})

    async def update_name(self, user_id: str, name: str | None,
                          now: datetime) -> Document | None:
        return await self._update({"_id": user_id},
                                  {"$set": {"name": name, "updated_at": now}})

    async def set_disabled(self, user_id: str, disabled: bool,
                           now: datetime) -> Document | None:
        return await self._update({"_id": user_id},
                                  {"$set": {"disabled": disabled, "updated_at": now}})

    async def delete(self, user_id: str) -> bool:
        result = await self._fresh.delete_one({"_id": user_id})
        return result.deleted_count == 1

    async def count(self) -> int:
        return await self._fresh.count_documents({})
