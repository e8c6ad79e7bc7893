"""The ``signing_keys`` collection: the only code that speaks MongoDB about signing keys.

Documents are built and read by :mod:`authnode.tokens.signing_keys`. A unique index on
``generation`` turns "rotate unless someone else just did" into one atomic insert (FerretDB
has no multi-document transactions). Reads always go to the primary: a key inserted by
another instance must be visible at once, or tokens it signs would fail to verify here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, ReadPreference
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, ExecutionTimeout

from authnode.errors import Unavailable

Document = dict[str, Any]

COLLECTION = "signing_keys"

# Everything that means "MongoDB cannot answer now" (down, failing over, pool exhausted).
_OUTAGE_ERRORS = (ConnectionFailure, ExecutionTimeout)


@contextmanager
def _outage_as_unavailable() -> Iterator[None]:
    try:
        yield
    except _OUTAGE_ERRORS as error:
        raise Unavailable("MongoDB") from error


class SigningKeyRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._keys: AsyncCollection[Document] = db.get_collection(
            COLLECTION, read_preference=ReadPreference.PRIMARY)

    async def ensure_indexes(self) -> None:
        with _outage_as_unavailable():
            await self._keys.create_index([("created_at", ASCENDING)])
            await self._keys.create_index([("generation", ASCENDING)], unique=True)

    async def insert(self, doc: Document) -> bool:
        """Insert ``doc``; False when its generation (or kid) is already taken."""
        with _outage_as_unavailable():
            try:
                await self._keys.insert_one(doc)
            except DuplicateKeyError:
                return False
        return True

    async def newest(self, limit: int) -> list[Document]:
        """Up to ``limit`` keys, newest (highest generation) first."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with _outage_as_unavailable():
            cursor = self._keys.find({}).sort(
                [("generation", DESCENDING), ("created_at", DESCENDING)]).limit(limit)
            return [doc async for doc in cursor]

    async def retire(self, kid: str, at: datetime) -> Literal["retired", "already retired",
                                                               "missing"]:
        """Mark ``kid`` retired at ``at`` (kept if it already was) and drop its sealed
        private half: a compromised key must never sign again, even if un-retired."""
        with _outage_as_unavailable():
            result = await self._keys.update_one(
                {"_id": kid, "retired_at": None},
                {"$set": {"retired_at": at}, "$unset": {"sealed_private_key": ""}})
            if result.matched_count:
                return "retired"
            found = await self._keys.count_documents({"_id": kid}, limit=1)
        return "already retired" if found else "missing"

    async def update(self, kid: str, expected_mac: bytes | None,
                     fields: Mapping[str, Any]) -> bool:
        """Set ``fields`` on ``kid`` if its ``mac`` is still ``expected_mac`` (None: the
        document has none); False if it changed meanwhile or is gone."""
        condition: Document = {"_id": kid, "mac": expected_mac}
        if expected_mac is None:
            condition["mac"] = {"$exists": False}
        with _outage_as_unavailable():
            result = await self._keys.update_one(condition, {"$set": dict(fields)})
        return result.matched_count == 1

    async def delete(self, kids: Sequence[str]) -> int:
        """Delete these keys (the purge job decides which: see KeyRing.purge)."""
        if not kids:
            return 0
        with _outage_as_unavailable():
            result = await self._keys.delete_many({"_id": {"$in": list(kids)}})
        return result.deleted_count
