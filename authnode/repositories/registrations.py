"""The ``registrations`` collection: sign-ups waiting for their address to be confirmed.

Every ``POST /v1/auth/register`` inserts one, whatever the address (so the answer and the
database work never tell whether it has an account). A registration holds the password
hash and name chosen in that request; the verification link sent for it names it, so
confirming a link creates the account exactly as that request asked, whatever other
registrations of the address came before or after. The first confirmed wins; the others
of the address are deleted then, which kills their links.

A registration outlives every link sent for it (:meth:`extend`); the purge job deletes
it once expired.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import DESCENDING

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.records import Registration

COLLECTION = "registrations"


def registration_from_document(doc: Document) -> Registration:
    return Registration(
        id=doc["_id"], email=doc["email"], name=doc.get("name"),
        password_hash=doc["password_hash"], created_at=doc["created_at"],
        expires_at=doc["expires_at"])


def registration_to_document(registration: Registration) -> Document:
    return {"_id": registration.id, "email": registration.email, "name": registration.name,
            "password_hash": registration.password_hash,
            "created_at": registration.created_at, "expires_at": registration.expires_at}


class RegistrationRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("email", name="email")
        await self._fresh.create_index("expires_at", name="expires_at")

    async def insert(self, registration: Registration) -> None:
        await self._fresh.insert_one(registration_to_document(registration))

    async def live(self, registration_id: str, now: datetime) -> Registration | None:
        found = await self._fresh.find_one({"_id": registration_id,
                                            "expires_at": {"$gt": now}})
        return registration_from_document(found) if found is not None else None

    async def newest_live(self, email: str, now: datetime) -> Registration | None:
        """The most recent unexpired registration of an address (resend's target)."""
        found = await self._fresh.find({"email": email, "expires_at": {"$gt": now}}) \
            .sort("created_at", DESCENDING).limit(1).to_list()
        return registration_from_document(found[0]) if found else None

    async def extend(self, registration_id: str, until: datetime) -> None:
        """Keep the registration at least ``until`` (the expiry of a link just minted)."""
        await self._fresh.update_one({"_id": registration_id},
                                     {"$max": {"expires_at": until}})

    async def delete(self, registration_id: str) -> None:
        await self._fresh.delete_one({"_id": registration_id})

    async def delete_for_email(self, email: str) -> int:
        result = await self._fresh.delete_many({"email": email})
        return result.deleted_count

    async def purge(self, now: datetime) -> int:
        result = await self._fresh.delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count
