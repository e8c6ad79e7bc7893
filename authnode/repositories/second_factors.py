"""The ``second_factors`` collection: one document per user with second factors, by user id.

Every change is a whole-document replace guarded by ``version`` (compare-and-set): FerretDB
v1 cannot update inside arrays (no positional ``$``, no ``$pull`` by condition), so the
domain reads the document, changes the record and writes it back, retrying on a conflict.
Spending a recovery code is also guarded by a spend-guard insert, since FerretDB's
conditional writes are not atomic (see :mod:`.spend_guards`): of two requests using one
code at once, one wins.
"""

from __future__ import annotations

from typing import Any

from bson import Binary

from authnode.clients.mongo import Document, MongoHandles
from authnode.repositories.records import Passkey, SecondFactors
from authnode.repositories.versioned import replace_versioned

COLLECTION = "second_factors"


def _passkey_from(doc: Document) -> Passkey:
    return Passkey(id=doc["id"], public_key=bytes(doc["public_key"]),
                   sign_count=int(doc["sign_count"]), name=doc["name"],
                   created_at=doc["created_at"], last_used_at=doc.get("last_used_at"))


def _passkey_to(passkey: Passkey) -> Document:
    return {"id": passkey.id, "public_key": Binary(passkey.public_key),
            "sign_count": passkey.sign_count, "name": passkey.name,
            "created_at": passkey.created_at, "last_used_at": passkey.last_used_at}


def _optional_bytes(value: Any) -> bytes | None:
    return bytes(value) if value is not None else None


def factors_from_document(doc: Document) -> SecondFactors:
    return SecondFactors(
        user_id=doc["_id"], version=int(doc["version"]),
        totp_sealed=_optional_bytes(doc.get("totp_sealed")),
        totp_enabled_at=doc.get("totp_enabled_at"),
        totp_pending_sealed=_optional_bytes(doc.get("totp_pending_sealed")),
        totp_pending_at=doc.get("totp_pending_at"),
        recovery=tuple(doc.get("recovery") or ()),
        passkeys=tuple(_passkey_from(p) for p in doc.get("passkeys") or ()))


def factors_to_document(factors: SecondFactors) -> Document:
    def binary(value: bytes | None) -> Binary | None:
        return Binary(value) if value is not None else None

    return {"_id": factors.user_id, "version": factors.version,
            "totp_sealed": binary(factors.totp_sealed),
            "totp_enabled_at": factors.totp_enabled_at,
            "totp_pending_sealed": binary(factors.totp_pending_sealed),
            "totp_pending_at": factors.totp_pending_at,
            "recovery": list(factors.recovery),
            "passkeys": [_passkey_to(p) for p in factors.passkeys]}


class SecondFactorRepository:
    def __init__(self, mongo: MongoHandles) -> None:
        self._fresh = mongo.primary[COLLECTION]

    async def get(self, user_id: str) -> SecondFactors | None:
        doc = await self._fresh.find_one({"_id": user_id})
        return factors_from_document(doc) if doc is not None else None

    async def replace(self, factors: SecondFactors) -> bool:
        """Store ``factors`` (whose ``version`` is one more than the stored one; 1 for a
        user without a document); False when another change came first."""
        return await replace_versioned(self._fresh, factors.user_id, factors.version,
                                       factors_to_document(factors))

    async def delete(self, user_id: str) -> bool:
        result = await self._fresh.delete_one({"_id": user_id})
        return result.deleted_count == 1
