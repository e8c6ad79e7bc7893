"""The ``sessions`` collection: one document per login, holding the refresh-token hash.

Rotation is a ``find_one_and_update`` whose filter carries the expected current hash,
behind an insert-once guard on that hash (see spend_guards), so two instances can never
both rotate the same token. Each rotation appends a prefix of the spent hash to
``spent`` (64 bits: enough to recognise a replayed old token, useless to forge one), so
the replay of any earlier token of the session is recognised as reuse, not only of the
previous one. The list grows by one entry per refresh and is trimmed to the newest
entries now and then (FerretDB v1 ignores ``$slice``, so it cannot be bounded in the same
update); the reads that list sessions leave it out. Expiry is checked in every
filter (FerretDB has no TTL monitor, and MongoDB's runs only once a minute); a periodic
job deletes what has expired.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.records import Session, spent_prefix
from authnode.repositories.spend_guards import SpendGuards

COLLECTION = "sessions"
# Remembered spent tokens per session: trimmed to the newest 256 when over 512, so a
# session document stays under ~15 KiB however often it is refreshed.
SPENT_KEPT_MAX = 512
SPENT_KEPT_AFTER_TRIM = 256
WITHOUT_SPENT = {"spent": 0}
ACTIVE_LISTED_MAX = 500


def session_from_document(doc: Document) -> Session:
    """``spent`` is None when the read left it out (:data:`WITHOUT_SPENT`)."""
    spent = doc.get("spent")
    return Session(
        id=doc["_id"], user_id=doc["user_id"], refresh_hash=doc["refresh_hash"],
        previous_hash=doc.get("previous_hash"), rotation_nonce=doc.get("rotation_nonce"),
        rotated_at=doc.get("rotated_at"), spent=tuple(spent) if spent is not None else None,
        created_at=doc["created_at"], last_used_at=doc.get("last_used_at"),
        expires_at=doc["expires_at"], user_agent=doc.get("user_agent") or "",
        ip=doc.get("ip") or "", revoked_at=doc.get("revoked_at"),
        credentials_at=doc.get("credentials_at"),
        amr=tuple(doc.get("amr") or ("pwd",)), auth_time=doc.get("auth_time"))


def session_to_document(session: Session) -> Document:
    doc: Document = {
        "_id": session.id, "user_id": session.user_id, "refresh_hash": session.refresh_hash,
        "previous_hash": session.previous_hash, "rotation_nonce": session.rotation_nonce,
        "rotated_at": session.rotated_at, "spent": list(session.spent or ()),
        "created_at": session.created_at, "last_used_at": session.last_used_at,
        "expires_at": session.expires_at, "user_agent": session.user_agent,
        "ip": session.ip, "revoked_at": session.revoked_at,
    }
    if session.credentials_at is not None:
        doc["credentials_at"] = session.credentials_at
    if session.amr != ("pwd",):
        doc["amr"] = list(session.amr)
    if session.auth_time is not None:
        doc["auth_time"] = session.auth_time
    return doc


def _session_or_none(doc: Document | None) -> Session | None:
    return session_from_document(doc) if doc is not None else None


class SessionRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]
        self._lagging = mongo.replica[COLLECTION]
        self._guards = SpendGuards(mongo)

    async def ensure_indexes(self) -> None:
        await self._fresh.create_index("user_id", name="user_id")
        await self._fresh.create_index("expires_at", name="expires_at")

    async def insert(self, session: Session) -> None:
        await self._fresh.insert_one(session_to_document(session))

    async def by_id(self, session_id: str, *, with_spent: bool = False) -> Session | None:
        return _session_or_none(await self._fresh.find_one(
            {"_id": session_id}, projection=None if with_spent else WITHOUT_SPENT))

    async def claim_rotation(self, session_id: str, current_hash: str,
                             now: datetime) -> str | None:
        """The session's user id for the one caller that may rotate this token; None if
        another caller has claimed it (a concurrent refresh with the same token, or a
        replay), or if it is not the live token of a live session.

        The session is read first so that only its live hash ever gets a guard: a made-up
        token, or an old one, causes no write (anyone can send those)."""
        live = await self._fresh.find_one(
            {"_id": session_id, "refresh_hash": current_hash, "revoked_at": None,
             "expires_at": {"$gt": now}}, projection={"user_id": 1})
        if live is None or not await self._guards.claim(f"refresh:{current_hash}", now):
            return None
        return str(live["user_id"])

    async def rotate(self, session_id: str, current_hash: str, *, new_hash: str, nonce: str,
                     now: datetime) -> Session | None:
        """Swap the refresh hash if ``current_hash`` is still the live one."""
        session: Document | None = await self._fresh.find_one_and_update(
            {"_id": session_id, "refresh_hash": current_hash, "revoked_at": None,
             "expires_at": {"$gt": now}},
            {"$set": {"refresh_hash": new_hash, "previous_hash": current_hash,
                      "rotation_nonce": nonce, "rotated_at": now, "last_used_at": now},
             "$push": {"spent": spent_prefix(current_hash)}},
            return_document=ReturnDocument.AFTER,  # FerretDB v1: no projection here
        )
        spent = session.get("spent", []) if session else []
        if len(spent) > SPENT_KEPT_MAX:
            # Keep the newest; only while no later rotation has happened (its filter).
            await self._fresh.update_one(
                {"_id": session_id, "refresh_hash": new_hash},
                {"$set": {"spent": spent[-SPENT_KEPT_AFTER_TRIM:]}})
        return _session_or_none(session)

    async def confirm_credentials(self, session_id: str, user_id: str,
                                  now: datetime) -> None:
        """Record that this live session proved the password at ``now`` (it changed the
        password), so it outlives the change; see ``credentials_at`` in
        :func:`authnode.accounts.authentication.refresh`."""
        await self._fresh.update_one(
            {"_id": session_id, "user_id": user_id, "revoked_at": None},
            {"$set": {"credentials_at": now}})

    async def reauthenticated(self, session_id: str, user_id: str, amr: tuple[str, ...],
                              now: datetime) -> bool:
        """Record a fresh proof of identity in this live session; False if it is not."""
        result = await self._fresh.update_one(
            {"_id": session_id, "user_id": user_id, "revoked_at": None},
            {"$set": {"amr": list(amr), "auth_time": now}})
        return result.matched_count == 1

    async def touch(self, session_id: str, now: datetime) -> None:
        await self._fresh.update_one({"_id": session_id}, {"$set": {"last_used_at": now}})

    async def revoke(self, session_id: str, now: datetime,
                     *, user_id: str | None = None) -> bool:
        """End one session; with ``user_id`` only if it belongs to that user. Whether
        this call ended it."""
        query: dict[str, Any] = {"_id": session_id, "revoked_at": None}
        if user_id is not None:
            query["user_id"] = user_id
        ended = await self._fresh.find_one_and_update(
            query, {"$set": {"revoked_at": now}}, return_document=ReturnDocument.AFTER)
        return ended is not None

    async def revoke_all(self, user_id: str, now: datetime,
                         *, except_session: str | None = None) -> int:
        query: dict[str, Any] = {"user_id": user_id, "revoked_at": None}
        if except_session is not None:
            query["_id"] = {"$ne": except_session}
        result = await self._fresh.update_many(query, {"$set": {"revoked_at": now}})
        return result.modified_count

    async def active_for_user(self, user_id: str, now: datetime) -> list[Session]:
        cursor = self._lagging.find(
            {"user_id": user_id, "revoked_at": None, "expires_at": {"$gt": now}},
            projection=WITHOUT_SPENT,
        ).sort("created_at", -1).limit(ACTIVE_LISTED_MAX)
        return [session_from_document(doc) for doc in await cursor.to_list()]

    async def live_ids_for_user(self, user_id: str, now: datetime) -> list[str]:
        """Fresh (primary) list, for revocation: every live session must be found."""
        cursor = self._fresh.find(
            {"user_id": user_id, "revoked_at": None, "expires_at": {"$gt": now}},
            projection={"_id": 1})
        return [doc["_id"] for doc in await cursor.to_list()]

    async def ids_to_mark(self, user_id: str, now: datetime,
                          revoked_since: datetime) -> list[str]:
        """Fresh (primary) list of the sessions whose access tokens a revocation must
        mark: the live ones, and those revoked since ``revoked_since`` (their marks may
        have been lost, e.g. by a Redis failover; writing them again is harmless)."""
        cursor = self._fresh.find(
            {"user_id": user_id, "expires_at": {"$gt": now},
             "$or": [{"revoked_at": None}, {"revoked_at": {"$gt": revoked_since}}]},
            projection={"_id": 1})
        return [doc["_id"] for doc in await cursor.to_list()]

    async def delete_for_user(self, user_id: str) -> None:
        await self._fresh.delete_many({"user_id": user_id})

    async def purge(self, now: datetime, revoked_before: datetime) -> int:
        """Delete expired and long-revoked sessions, and expired spend guards (of links
        too: one collection, one purge)."""
        result = await self._fresh.delete_many(
            {"$or": [{"expires_at": {"$lte": now}}, {"revoked_at": {"$lte": revoked_before}}]})
        return result.deleted_count + await self._guards.purge(now)
