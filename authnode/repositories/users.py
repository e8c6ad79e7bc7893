"""The ``users`` collection and its address lookups: the only code that speaks MongoDB
about accounts.

Read routing lives here, once: ``_fresh`` (the primary) serves the login, refresh and
revocation paths and every write; ``_lagging`` (``secondaryPreferred``) serves reads that
tolerate replica lag, such as showing a profile on a cache miss.

A user's ``_id`` is random and permanent (:func:`authnode.repositories.records.new_user_id`):
deleting an account and registering the address again gives a new id, so apps keyed by
``sub`` never hand the old person's data to the new one. Accounts made before ids were
random keep theirs.

Finding an account by address goes through the ``user_emails`` collection: one document
per account, whose ``_id`` is a keyed hash of the normalized address (the key is random
per deployment, kept in the ``meta`` collection) and which names the user. Both reads are
by primary key, and an unknown address reads a user id that never exists, so a lookup
costs the same store work whether or not the address has an account: a secondary index
would do on MongoDB, but FerretDB v1 scans the collection for it, which made a login for
an unknown address measurably slower (user enumeration by timing). Inserting the lookup
document is also the atomic "this address now has an account" step, on a sharded cluster
too: of two registrations racing for one address, exactly one insert succeeds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.records import User

COLLECTION = "users"
LOOKUP_COLLECTION = "user_emails"
META_COLLECTION = "meta"
ID_KEY_DOCUMENT = "user_id_key"
# No user has this id (new ids are 32 hex digits), so reading it costs a miss by _id.
ABSENT_USER_ID = "-"
# Creating an account writes its lookup, then the user, within milliseconds. A lookup
# older than this whose user does not exist was left by a process that died (or lost
# MongoDB) between the two writes, and is released so the address can be registered.
DANGLING_LOOKUP_AFTER = timedelta(minutes=5)


def user_from_document(doc: Document) -> User:
    """Fields older accounts may lack read as the domain always took them."""
    return User(
        id=doc["_id"], email=doc["email"], name=doc.get("name"),
        password_hash=doc["password_hash"], email_verified=bool(doc.get("email_verified")),
        disabled=bool(doc.get("disabled")),
        credential_version=doc.get("credential_version", 1),
        created_at=doc.get("created_at"), updated_at=doc.get("updated_at"),
        password_changed_at=doc.get("password_changed_at"))


def user_to_document(user: User) -> Document:
    doc: Document = {
        "_id": user.id, "email": user.email, "name": user.name,
        "password_hash": user.password_hash, "email_verified": user.email_verified,
        "disabled": user.disabled, "credential_version": user.credential_version,
        "created_at": user.created_at, "updated_at": user.updated_at,
    }
    if user.password_changed_at is not None:
        doc["password_changed_at"] = user.password_changed_at
    return doc


def _user_or_none(doc: Document | None) -> User | None:
    return user_from_document(doc) if doc is not None else None


class UserRepository:
    def __init__(self, mongo: MongoHandles, *, id_key: bytes | None = None) -> None:
        """``id_key`` is for tests; services call :meth:`load_id_key`."""
        self._fresh = mongo.primary[COLLECTION]
        self._lagging = mongo.replica[COLLECTION]
        self._lookups = mongo.primary[LOOKUP_COLLECTION]
        self._meta = mongo.primary[META_COLLECTION]
        self._id_key = id_key

    async def load_id_key(self) -> None:
        """Read the deployment's address-lookup key, creating it on first start (racing
        instances: one insert wins, the others read the winner's). The document keeps
        its old name: accounts made before ids were random have ``_id`` = this hash."""
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

    def lookup_id(self, email: str) -> str:
        """The keyed hash of a normalized address: the ``_id`` of its lookup document."""
        if self._id_key is None:
            raise RuntimeError("UserRepository.load_id_key() has not run")
        return hmac.new(self._id_key, email.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("email", unique=True, name="email_unique")

    async def backfill_lookups(self, now: datetime) -> int:
        """Give every account that has none a lookup document naming its existing id
        (``authnode migrate``, after accounts were made by a version without lookups);
        returns how many were created. Safe to repeat."""
        created = 0
        async for user in self._fresh.find({}, projection={"email": 1}):
            try:
                await self._lookups.insert_one({"_id": self.lookup_id(user["email"]),
                                                "user_id": user["_id"], "created_at": now})
            except DuplicateKeyError:
                continue
            created += 1
        return created

    async def create(self, user: User, now: datetime) -> bool:
        """Insert a new account; False when its address has one already.

        The lookup insert decides (atomic on any store); the user document follows. If
        that second write fails, the lookup is released again before the error goes up.
        """
        if not await self._claim_address(user.email, user.id, now):
            return False
        try:
            await self._fresh.insert_one(user_to_document(user))
        except BaseException as error:
            await self._release_address(user.email, user.id)
            if isinstance(error, DuplicateKeyError):
                return False  # an account without a lookup holds the address (email_unique)
            raise
        return True

    async def _claim_address(self, email: str, user_id: str, now: datetime) -> bool:
        lookup = {"_id": self.lookup_id(email), "user_id": user_id, "created_at": now}
        try:
            await self._lookups.insert_one(lookup)
            return True
        except DuplicateKeyError:
            pass
        held = await self._lookups.find_one({"_id": lookup["_id"]})
        if held is None or held.get("created_at", now) > now - DANGLING_LOOKUP_AFTER or \
                await self._fresh.find_one({"_id": held["user_id"]}, projection={"_id": 1}):
            return False
        # Dangling: release exactly that lookup (not one written meanwhile) and try again.
        await self._lookups.delete_one({"_id": held["_id"], "user_id": held["user_id"]})
        try:
            await self._lookups.insert_one(lookup)
        except DuplicateKeyError:
            return False
        return True

    async def _release_address(self, email: str, user_id: str) -> None:
        await self._lookups.delete_one({"_id": self.lookup_id(email), "user_id": user_id})

    async def by_email(self, email: str) -> User | None:
        """The account with this normalized address, or None, in two reads by ``_id``
        either way (an unknown address reads a user that does not exist)."""
        lookup = await self._lookups.find_one({"_id": self.lookup_id(email)})
        user = await self._fresh.find_one(
            {"_id": lookup["user_id"] if lookup else ABSENT_USER_ID})
        if user is None or user.get("email") != email:
            return None
        return user_from_document(user)

    async def by_id(self, user_id: str) -> User | None:
        return _user_or_none(await self._fresh.find_one({"_id": user_id}))

    async def by_id_for_display(self, user_id: str) -> User | None:
        return _user_or_none(await self._lagging.find_one({"_id": user_id}))

    async def _update(self, query: dict[str, Any], update: dict[str, Any]) -> User | None:
        return _user_or_none(await self._fresh.find_one_and_update(
            query, update, return_document=ReturnDocument.AFTER))

    async def mark_verified(self, user_id: str, credential_version: int,
                            now: datetime) -> User | None:
        """Verify the address, unless the password changed since the link was issued."""
        return await self._update(
            {"_id": user_id, "credential_version": credential_version},
            {"$set": {"email_verified": True, "updated_at": now}},
        )

    async def set_password(self, user_id: str, password_hash: str, now: datetime,
                           *, expected_hash: str | None = None,
                           expected_version: int | None = None,
                           verify_email: bool = False) -> User | None:
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
                          now: datetime) -> User | None:
        return await self._update({"_id": user_id},
                                  {"$set": {"name": name, "updated_at": now}})

    async def set_disabled(self, user_id: str, disabled: bool,
                           now: datetime) -> User | None:
        return await self._update({"_id": user_id},
                                  {"$set": {"disabled": disabled, "updated_at": now}})

    async def delete(self, user_id: str) -> bool:
        """Delete the account, then its lookup (the address is free again). Should the
        second write be lost, the lookup is dangling and released by the next
        registration of the address after :data:`DANGLING_LOOKUP_AFTER`."""
        user = await self._fresh.find_one_and_delete({"_id": user_id})
        if user is None:
            return False
        await self._release_address(user["email"], user_id)
        return True

    async def count(self) -> int:
        return await self._fresh.count_documents({})

    async def page(self, *, after_id: str | None, limit: int, email: str | None = None,
                   email_prefix: str | None = None,
                   created_after: datetime | None = None) -> list[User]:
        query: dict[str, Any] = {}
        if after_id is not None:
            query["_id"] = {"$gt": after_id}
        if email is not None:
            query["email"] = email
        elif email_prefix is not None:
            query["email"] = {"$regex": "^" + re.escape(email_prefix)}
        if created_after is not None:
            query["created_at"] = {"$gt": created_after}
        cursor = self._lagging.find(query).sort("_id", 1).limit(limit)
        return [user_from_document(doc) async for doc in cursor]
