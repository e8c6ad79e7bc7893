"""The ``admin_keys`` collection: operators' API keys, by the SHA-256 of the secret key."""

from __future__ import annotations

from datetime import datetime

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.records import AdminKey

COLLECTION = "admin_keys"


def key_from_document(doc: Document) -> AdminKey:
    return AdminKey(id=doc["key_id"], digest=doc["_id"], name=doc["name"],
                    scopes=tuple(doc["scopes"]), created_at=doc["created_at"],
                    revoked_at=doc.get("revoked_at"))


def key_to_document(key: AdminKey) -> Document:
    return {"_id": key.digest, "key_id": key.id, "name": key.name,
            "scopes": list(key.scopes), "created_at": key.created_at,
            "revoked_at": key.revoked_at}


class AdminKeyRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("key_id", name="key_id", unique=True)

    async def insert(self, key: AdminKey) -> None:
        await self._fresh.insert_one(key_to_document(key))

    async def by_digest(self, digest: str) -> AdminKey | None:
        doc = await self._fresh.find_one({"_id": digest})
        return key_from_document(doc) if doc is not None else None

    async def all(self) -> list[AdminKey]:
        cursor = self._fresh.find({}).sort([("created_at", 1), ("key_id", 1)])
        return [key_from_document(doc) async for doc in cursor]

    async def revoke(self, key_id: str, now: datetime) -> bool:
        result = await self._fresh.update_one({"key_id": key_id, "revoked_at": None},
                                              {"$set": {"revoked_at": now}})
        return result.matched_count == 1
