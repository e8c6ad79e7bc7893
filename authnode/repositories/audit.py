"""The ``audit_events`` collection: security events, newest first by their sortable id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.records import AuditEvent

COLLECTION = "audit_events"
_FIELDS = ("at", "event", "user_id", "actor", "outcome", "ip", "user_agent", "request_id")


def event_from_document(doc: Document) -> AuditEvent:
    return AuditEvent(id=doc["_id"], at=doc["at"], event=doc["event"],
                      user_id=doc.get("user_id"), actor=doc["actor"], outcome=doc["outcome"],
                      ip=doc.get("ip"), user_agent=doc.get("user_agent"),
                      request_id=doc.get("request_id"))


def event_to_document(event: AuditEvent) -> Document:
    return {"_id": event.id, **{name: getattr(event, name) for name in _FIELDS}}


class AuditRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]
        self._lagging = mongo.replica[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("user_id", name="user_id")
        await self._fresh.create_index("at", name="at")

    async def append(self, events: list[AuditEvent]) -> None:
        if events:
            await self._fresh.insert_many([event_to_document(e) for e in events],
                                          ordered=False)

    async def page(self, *, before_id: str | None, limit: int, user_id: str | None = None,
                   event: str | None = None, after: datetime | None = None
                   ) -> list[AuditEvent]:
        query: dict[str, Any] = {}
        if before_id is not None:
            query["_id"] = {"$lt": before_id}
        if user_id is not None:
            query["user_id"] = user_id
        if event is not None:
            query["event"] = event
        if after is not None:
            query["at"] = {"$gt": after}
        cursor = self._lagging.find(query).sort("_id", -1).limit(limit)
        return [event_from_document(doc) async for doc in cursor]

    async def purge(self, before: datetime) -> int:
        result = await self._fresh.delete_many({"at": {"$lt": before}})
        return result.deleted_count
