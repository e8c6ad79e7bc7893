"""Recovery codes: ten single-use codes for when the authenticator is lost.

A code is 10 characters of Crockford's base32 (50 random bits) shown as ``xxxxx-xxxxx``.
Stored as an HMAC-SHA256 under a key derived from ``SECRET_KEY``, so a copy of the
database alone cannot be searched for the codes offline (50 bits would fall to a plain
hash in a GPU-day). Input is forgiving: case, spaces, dashes, and the letters people
confuse with digits (``o``, ``i``, ``l``) are normalized before hashing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authnode.settings import Secret

COUNT = 10
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford: no i, l, o, u
_CHARS = 10
_CONFUSED = str.maketrans({"o": "0", "i": "1", "l": "1"})
_HKDF_INFO = b"authnode recovery codes v1"


def new_codes(count: int = COUNT) -> list[str]:
    """Fresh codes, as shown to the user once."""
    codes = []
    for _ in range(count):
        text = "".join(secrets.choice(_ALPHABET) for _ in range(_CHARS))
        codes.append(f"{text[:5]}-{text[5:]}")
    return codes


def normalize(raw: str) -> str | None:
    """The canonical 10 characters, or None when ``raw`` cannot be a recovery code."""
    text = raw.strip().lower().replace("-", "").replace(" ", "").translate(_CONFUSED)
    if len(text) != _CHARS or not set(text) <= set(_ALPHABET):
        return None
    return text


def _key(secret: Secret) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_HKDF_INFO).derive(secret.reveal().encode("utf-8"))


class RecoveryCodeHasher:
    """Hashes codes under the current ``SECRET_KEY``; during a rotation of it, a code may
    also match under ``SECRET_KEY_PREVIOUS`` (:meth:`candidates`)."""

    def __init__(self, secrets_newest_first: Sequence[Secret]) -> None:
        if not secrets_newest_first:
            raise ValueError("at least one secret is needed")
        self._keys = [_key(secret) for secret in secrets_newest_first]

    def _digest(self, key: bytes, canonical: str) -> str:
        return hmac.new(key, canonical.encode("ascii"), hashlib.sha256).hexdigest()

    def hash(self, code: str) -> str:
        canonical = normalize(code)
        if canonical is None:
            raise ValueError("not a recovery code")
        return self._digest(self._keys[0], canonical)

    def candidates(self, raw: str) -> list[str]:
        """The stored hashes ``raw`` would match, one per secret; empty if it cannot be a
        code. The store then removes whichever of them it holds, atomically."""
        canonical = normalize(raw)
        if canonical is None:
            return []
        return [self._digest(key, canonical) for key in self._keys]
