"""The ``sent_emails`` collection: idempotency keys of emails already handed to SMTP.

A job may run twice (at-least-once delivery, a worker killed after sending); the worker
checks the key before sending and records it right after, so a repeated job does not send
the same email again.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.errors import DuplicateKeyError

from authnode.clients.mongo import MongoHandles

COLLECTION = "sent_emails"


class SentEmailRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("sent_at", name="sent_at")

    async def was_sent(self, key: str) -> bool:
        return await self._fresh.find_one({"_id": key}, projection={"_id": 1}) is not None

    async def record(self, key: str, kind: str, now: datetime) -> None:
        try:
            await self._fresh.insert_one({"_id": key, "kind": kind, "sent_at": now})
        except DuplicateKeyError:
            pass

    async def purge(self, sent_before: datetime) -> int:
        result = await self._fresh.delete_many({"sent_at": {"$lte": sent_before}})
        return result.deleted_count
