"""Whole-document writes guarded by a ``version`` field (compare-and-set), for records
FerretDB v1 cannot update in place (arrays inside a document: no positional ``$``)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from authnode.clients.mongo import Document


async def replace_versioned(collection: AsyncCollection[Document], doc_id: Any, version: int,
                            doc: Document) -> bool:
    """Write ``doc`` (carrying ``version``) if the stored one is at ``version - 1``; version
    1 inserts. False when another write came first (the caller reads again and retries)."""
    if version == 1:
        try:
            await collection.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True
    result = await collection.replace_one({"_id": doc_id, "version": version - 1}, doc)
    return result.matched_count == 1
