"""The ``email_tokens`` collection: verification and reset links, stored as hashes.

A token is spent with a ``find_one_and_update`` that checks kind, expiry and "not used
yet" in its filter, behind an insert-once guard (see spend_guards), so a link works
exactly once even under concurrent clicks.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.spend_guards import SpendGuards

COLLECTION = "email_tokens"


class EmailTokenRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]
        self._guards = SpendGuards(mongo)

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("user_id", name="user_id")
        await self._fresh.create_index("expires_at", name="expires_at")

    async def insert(self, token: Document) -> None:
        await self._fresh.insert_one(token)

    async def consume(self, token_hash: str, kind: str, now: datetime) -> Document | None:
        if not await self._guards.claim(f"email:{token_hash}", now):
            return None  # spent, or being spent right now by a concurrent request
        return await self._fresh.find_one_and_update(
            {"_id": token_hash, "kind": kind, "used_at": None, "expires_at": {"$gt": now}},
            {"$set": {"used_at": now}},
            return_document=ReturnDocument.AFTER,
        )

    async def is_usable(self, token_hash: str, kind: str, now: datetime) -> bool:
        found = await self._fresh.find_one(
            {"_id": token_hash, "kind": kind, "used_at": None, "expires_at": {"$gt": now}},
            projection={"_id": 1})
        return found is not None

    async def owner(self, token_hash: str) -> str | None:
        found = await self._fresh.find_one({"_id": token_hash}, projection={"user_id": 1})
        return found["user_id"] if found else None

    async def delete_for_user(self, user_id: str) -> None:
        await self._fresh.delete_many({"user_id": user_id})

    async def purge(self, now: datetime) -> int:
        result = await self._fresh.delete_many(
            {"$or": [{"expires_at": {"$lte": now}}, {"used_at": {"$ne": None}}]})
        return result.deleted_count
