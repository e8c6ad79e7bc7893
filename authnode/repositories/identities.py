"""The ``identities`` collection: which provider account (``provider``, ``sub``) signs in
as which user.

One document per linked identity, ``_id`` a hash of provider and ``sub``
(:func:`~authnode.repositories.records.identity_id`), plus a unique index on
(``provider``, ``subject``): linking is one insert, and of two callbacks linking the same
``sub`` at once exactly one succeeds, on a sharded cluster too. A user's identities are
found by the ``user_id`` index.
"""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.records import Identity, identity_id

COLLECTION = "identities"


def _from_document(doc: Document) -> Identity:
    return Identity(provider=doc["provider"], subject=doc["subject"], user_id=doc["user_id"],
                    email=doc.get("email"), created_at=doc["created_at"])


class IdentityRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index([("provider", 1), ("subject", 1)], unique=True,
                                       name="provider_subject_unique")
        await self._fresh.create_index("user_id", name="user_id")

    async def insert(self, identity: Identity) -> bool:
        try:
            await self._fresh.insert_one({
                "_id": identity.id, "provider": identity.provider,
                "subject": identity.subject, "user_id": identity.user_id,
                "email": identity.email, "created_at": identity.created_at})
        except DuplicateKeyError:
            return False
        return True

    async def by_subject(self, provider: str, subject: str) -> Identity | None:
        doc = await self._fresh.find_one({"_id": identity_id(provider, subject),
                                          "provider": provider, "subject": subject})
        return _from_document(doc) if doc is not None else None

    async def for_user(self, user_id: str) -> list[Identity]:
        cursor = self._fresh.find({"user_id": user_id}).sort([("created_at", 1), ("_id", 1)])
        return [_from_document(doc) async for doc in cursor]

    async def delete(self, user_id: str, identity_id: str) -> bool:
        result = await self._fresh.delete_one({"_id": identity_id, "user_id": user_id})
        return result.deleted_count == 1

    async def delete_for_user(self, user_id: str) -> int:
        result = await self._fresh.delete_many({"user_id": user_id})
        return result.deleted_count
