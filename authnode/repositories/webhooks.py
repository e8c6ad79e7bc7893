"""The ``webhook_endpoints`` and ``webhook_deliveries`` collections.

Within FerretDB v1's reach: whole-document writes and queries on the primary key or plain
top-level fields. A delivery is one document per (endpoint, event) holding its attempts;
each attempt rewrites the document, guarded by ``version`` (compare-and-set), as
:mod:`.second_factors` does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DESCENDING

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.records import DeliveryAttempt, WebhookDelivery, WebhookEndpoint
from authnode.repositories.versioned import replace_versioned

ENDPOINTS = "webhook_endpoints"
DELIVERIES = "webhook_deliveries"


def _optional_bytes(value: Any) -> bytes | None:
    return bytes(value) if value is not None else None


def endpoint_from_document(doc: Document) -> WebhookEndpoint:
    return WebhookEndpoint(id=doc["_id"], url=doc["url"], events=tuple(doc["events"]),
                           description=doc.get("description") or "",
                           sealed_secret=_optional_bytes(doc.get("sealed_secret")),
                           created_at=doc["created_at"], deleted_at=doc.get("deleted_at"))


def endpoint_to_document(endpoint: WebhookEndpoint) -> Document:
    sealed = endpoint.sealed_secret
    return {"_id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events),
            "description": endpoint.description,
            "sealed_secret": Binary(sealed) if sealed is not None else None,
            "created_at": endpoint.created_at, "deleted_at": endpoint.deleted_at}


def _attempt_from(doc: Document) -> DeliveryAttempt:
    return DeliveryAttempt(at=doc["at"], duration_ms=int(doc["duration_ms"]),
                           status_code=doc.get("status_code"), error=doc.get("error"))


def delivery_from_document(doc: Document) -> WebhookDelivery:
    return WebhookDelivery(
        id=doc["_id"], endpoint_id=doc["endpoint_id"], webhook_id=doc["webhook_id"],
        event_type=doc["event_type"], status=doc["status"], created_at=doc["created_at"],
        updated_at=doc["updated_at"], version=int(doc["version"]),
        attempts=tuple(_attempt_from(a) for a in doc.get("attempts") or ()))


def delivery_to_document(delivery: WebhookDelivery) -> Document:
    return {"_id": delivery.id, "endpoint_id": delivery.endpoint_id,
            "webhook_id": delivery.webhook_id, "event_type": delivery.event_type,
            "status": delivery.status, "created_at": delivery.created_at,
            "updated_at": delivery.updated_at, "version": delivery.version,
            "attempts": [{"at": a.at, "duration_ms": a.duration_ms,
                          "status_code": a.status_code, "error": a.error}
                         for a in delivery.attempts]}


class WebhookEndpointRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[ENDPOINTS]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index([("created_at", ASCENDING)], name="created_at")

    async def insert(self, endpoint: WebhookEndpoint) -> None:
        await self._fresh.insert_one(endpoint_to_document(endpoint))

    async def by_id(self, endpoint_id: str) -> WebhookEndpoint | None:
        doc = await self._fresh.find_one({"_id": endpoint_id})
        return endpoint_from_document(doc) if doc is not None else None

    async def live(self) -> list[WebhookEndpoint]:
        cursor = self._fresh.find({"deleted_at": None}).sort(
            [("created_at", ASCENDING), ("_id", ASCENDING)])
        return [endpoint_from_document(doc) async for doc in cursor]

    async def delete(self, endpoint_id: str, now: datetime) -> bool:
        result = await self._fresh.update_one(
            {"_id": endpoint_id, "deleted_at": None},
            {"$set": {"deleted_at": now, "sealed_secret": None}})
        return result.matched_count == 1


class WebhookDeliveryRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[DELIVERIES]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index([("endpoint_id", ASCENDING), ("created_at", DESCENDING)],
                                       name="endpoint_created")
        await self._fresh.create_index([("updated_at", ASCENDING)], name="updated_at")

    async def get(self, delivery_id: str) -> WebhookDelivery | None:
        doc = await self._fresh.find_one({"_id": delivery_id})
        return delivery_from_document(doc) if doc is not None else None

    async def replace(self, delivery: WebhookDelivery) -> bool:
        return await replace_versioned(self._fresh, delivery.id, delivery.version,
                                       delivery_to_document(delivery))

    async def for_endpoint(self, endpoint_id: str, limit: int) -> list[WebhookDelivery]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        cursor = self._fresh.find({"endpoint_id": endpoint_id}).sort(
            [("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [delivery_from_document(doc) async for doc in cursor]

    async def purge(self, updated_before: datetime) -> int:
        result = await self._fresh.delete_many({"updated_at": {"$lt": updated_before}})
        return result.deleted_count
