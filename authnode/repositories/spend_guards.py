"""The ``spend_guards`` collection: insert-once claims that make "spend this at most once"
atomic on any document store.

Spending a refresh token or an email link is a conditional ``find_one_and_update``. On
MongoDB that is atomic; on FerretDB v1 with its SQLite handler it is a read, then a write
by ``_id``, outside a transaction (FerretDB issue #3040), so two concurrent callers can
both match the filter. An insert whose ``_id`` is the spent thing is atomic everywhere (the
primary key, on a sharded cluster too): the one caller whose insert succeeds owns the
spend, and the others know at once that somebody else has it.

A guard only has to outlive the race it settles, because the spend itself marks the
document (a used link, a rotated refresh hash); the purge job deletes guards after
:data:`GUARD_TTL`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from authnode.clients.mongo import MongoHandles

COLLECTION = "spend_guards"
GUARD_TTL = timedelta(hours=1)


class SpendGuards:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("expires_at", name="expires_at")

    async def claim(self, key: str, now: datetime) -> bool:
        """True for the first caller with this ``key``; False for every later one."""
        try:
            await self._fresh.insert_one({"_id": key, "expires_at": now + GUARD_TTL})
        except DuplicateKeyError:
            return False
        return True

    async def purge(self, now: datetime) -> int:
        result = await self._fresh.delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count
