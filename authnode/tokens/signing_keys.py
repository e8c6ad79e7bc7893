"""Ed25519 signing keys for access tokens: generation, sealing at rest, JWK and documents.

Private keys are stored sealed with Fernet under a key derived from ``SECRET_KEY`` (HKDF-
SHA256), so a copy of the database alone cannot mint tokens. The public half is stored in
plain as a JWK: verifying needs no secret.

Each stored key carries a ``generation`` (1, 2, 3, ...) with a unique index on it: two
instances that rotate at the same moment both try to insert generation N+1 and exactly
one succeeds, so a race can never push the previous key out of the published pair.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken as FernetInvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authnode.settings import Secret

ALGORITHM = "EdDSA"
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HKDF_INFO = b"authnode signing keys v1"
_KID_BYTES = 12  # 16 url-safe characters


class SigningKeyError(RuntimeError):
    """A stored signing key that cannot be used: malformed, or sealed under another secret."""


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key pair; ``private_key`` is ``None`` for a verify-only copy."""

    kid: str
    private_key: Ed25519PrivateKey | None
    public_key: Ed25519PublicKey
    created_at: datetime
    generation: int = 0

    def __repr__(self) -> str:
        return (f"SigningKey(kid={self.kid!r}, generation={self.generation}, "
                f"created_at={self.created_at.isoformat()}, "
                f"private={'yes' if self.private_key is not None else 'no'})")


def _utc_ms(moment: datetime) -> datetime:
    """UTC, truncated to the millisecond BSON keeps, so a stored key compares equal."""
    if moment.tzinfo is None:
        raise ValueError("expected a timezone-aware datetime")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def generate_signing_key(now: datetime, *, generation: int = 0) -> SigningKey:
    private_key = Ed25519PrivateKey.generate()
    return SigningKey(
        kid=secrets.token_urlsafe(_KID_BYTES),
        private_key=private_key,
        public_key=private_key.public_key(),
        created_at=_utc_ms(now),
        generation=generation,
    )


def _fernet(secret: Secret) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.reveal().encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(derived))


def seal_private_key(key: SigningKey, secret: Secret) -> bytes:
    if key.private_key is None:
        raise ValueError(f"signing key {key.kid} has no private half to seal")
    raw = key.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    return _fernet(secret).encrypt(raw)


def open_private_key(sealed: bytes, secret: Secret) -> Ed25519PrivateKey:
    try:
        raw = _fernet(secret).decrypt(sealed)
    except (FernetInvalidToken, TypeError, ValueError):
        raise SigningKeyError(
            "cannot open a stored signing key: it was sealed with a different SECRET_KEY "
            "(or is corrupt); every instance must use the same SECRET_KEY") from None
    try:
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError("a stored signing key is not a valid Ed25519 key") from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key: SigningKey) -> dict[str, str]:
    raw = key.public_key.public_bytes(serialization.Encoding.Raw,
                                      serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), "kid": key.kid,
            "alg": ALGORITHM, "use": "sig"}


def public_key_from_jwk(jwk: object) -> Ed25519PublicKey:
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise SigningKeyError("a stored public key is not an Ed25519 JWK")
    x = jwk.get("x")
    try:
        if not isinstance(x, str):
            raise ValueError("x is not a string")
        return Ed25519PublicKey.from_public_bytes(_b64url_decode(x))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise SigningKeyError("a stored public key is not an Ed25519 JWK") from None


def to_document(key: SigningKey, secret: Secret) -> dict[str, Any]:
    """The MongoDB document for ``key`` (``_id`` is the kid)."""
    return {
        "_id": key.kid,
        "alg": ALGORITHM,
        "generation": key.generation,
        "sealed_private_key": seal_private_key(key, secret),
        "public_jwk": public_jwk(key),
        "created_at": key.created_at,
    }


def from_document(doc: Mapping[str, Any], secret: Secret | None) -> SigningKey:
    """The key stored in ``doc``; with ``secret=None`` a verify-only copy.

    Raises :class:`SigningKeyError` for a malformed document or a wrong secret.
    """
    kid = doc.get("_id")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise SigningKeyError("a stored signing key has no valid kid")
    if doc.get("alg") != ALGORITHM:
        raise SigningKeyError(f"signing key {kid} is not an {ALGORITHM} key")
    generation = doc.get("generation")
    created_at = doc.get("created_at")
    if type(generation) is not int or not isinstance(created_at, datetime):
        raise SigningKeyError(f"signing key {kid} has no valid generation or created_at")
    if created_at.tzinfo is None:  # a client without tz_aware=True
        created_at = created_at.replace(tzinfo=UTC)
    public_key = public_key_from_jwk(doc.get("public_jwk"))
    private_key = None
    if secret is not None:
        sealed = doc.get("sealed_private_key")
        if not isinstance(sealed, bytes):
            raise SigningKeyError(f"signing key {kid} has no sealed private key")
        try:
            private_key = open_private_key(sealed, secret)
        except SigningKeyError as error:
            raise SigningKeyError(f"signing key {kid}: {error}") from None
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        if private_key.public_key().public_bytes(*raw) != public_key.public_bytes(*raw):
            raise SigningKeyError(f"signing key {kid}: private and public halves differ")
    return SigningKey(kid=kid, private_key=private_key, public_key=public_key,
                      created_at=_utc_ms(created_at), generation=generation)
