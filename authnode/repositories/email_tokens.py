"""The ``email_tokens`` collection: verification and reset links, stored as hashes.

A token is spent with a ``find_one_and_update`` that checks kind, expiry and "not used
yet" in its filter, behind an insert-once guard (see spend_guards), so a link works
exactly once even under concurrent clicks.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.records import EmailToken
from authnode.repositories.spend_guards import SpendGuards

COLLECTION = "email_tokens"


def email_token_from_document(doc: Document) -> EmailToken:
    return EmailToken(
        id=doc["_id"], kind=doc["kind"], created_at=doc["created_at"],
        expires_at=doc["expires_at"], used_at=doc.get("used_at"),
        registration_id=doc.get("registration_id"), user_id=doc.get("user_id"),
        credential_version=doc.get("credential_version"))


def email_token_to_document(token: EmailToken) -> Document:
    """A verification link for a registration names it; a link for an account names the
    user and the credential version (absent fields stay absent)."""
    doc: Document = {"_id": token.id, "kind": token.kind, "created_at": token.created_at,
                     "expires_at": token.expires_at, "used_at": token.used_at}
    if token.registration_id is not None:
        doc["registration_id"] = token.registration_id
    if token.user_id is not None:
        doc["user_id"] = token.user_id
    if token.credential_version is not None:
        doc["credential_version"] = token.credential_version
    return doc


class EmailTokenRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]
        self._guards = SpendGuards(mongo)

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("user_id", name="user_id")
        await self._fresh.create_index("expires_at", name="expires_at")

    async def insert(self, token: EmailToken) -> None:
        await self._fresh.insert_one(email_token_to_document(token))

    async def consume(self, token_hash: str, kind: str, now: datetime) -> EmailToken | None:
        if not await self._guards.claim(f"email:{token_hash}", now):
            return None  # spent, or being spent right now by a concurrent request
        spent = await self._fresh.find_one_and_update(
            {"_id": token_hash, "kind": kind, "used_at": None, "expires_at": {"$gt": now}},
            {"$set": {"used_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return email_token_from_document(spent) if spent is not None else None

    async def is_usable(self, token_hash: str, kind: str, now: datetime) -> bool:
        found = await self._fresh.find_one(
            {"_id": token_hash, "kind": kind, "used_at": None, "expires_at": {"$gt": now}},
            projection={"_id": 1})
        return found is not None

    async def owner(self, token_hash: str) -> str | None:
        found = await self._fresh.find_one({"_id": token_hash}, projection={"user_id": 1})
        return found.get("user_id") if found else None  # a registration's link names none

    async def delete_for_user(self, user_id: str) -> None:
        await self._fresh.delete_many({"user_id": user_id})

    async def purge(self, now: datetime) -> int:
        result = await self._fresh.delete_many(
            {"$or": [{"expires_at": {"$lte": now}}, {"used_at": {"$ne": None}}]})
        return result.deleted_count
