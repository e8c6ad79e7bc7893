"""Ed25519 signing keys for access tokens: generation, sealing at rest, JWK and documents.

Private keys are stored sealed with Fernet under a key derived from ``SECRET_KEY`` (HKDF-
SHA256), so a copy of the database alone cannot mint tokens. The public half is stored in
plain as a JWK, authenticated by an HMAC-SHA256 (``mac``) under another key derived from
``SECRET_KEY``: someone who can write to MongoDB but does not know ``SECRET_KEY`` cannot
plant a verification key, nor change a key's generation or creation time. A document whose
MAC does not verify is refused (:class:`UnauthenticKey`).

Several secrets may be given, the current ``SECRET_KEY`` first, then
``SECRET_KEY_PREVIOUS`` while ``SECRET_KEY`` itself is being rotated: a document is
accepted under whichever of them its MAC verifies with, and its private half is opened
with that one. New documents are always written under the first. :func:`restamp` brings
an older document (one written under the previous secret, or before MACs existed) under
the current secret.

Each stored key carries a ``generation`` (1, 2, 3, ...) with a unique index on it: two
instances that rotate at the same moment both try to insert generation N+1 and exactly
one succeeds, so a race can never push the previous key out of the published pair.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
_MAC_HKDF_INFO = b"authnode signing key mac v1"  # a key of its own, distinct from sealing
_MAC_VERSION = 1
_KID_BYTES = 12  # 16 url-safe characters
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SigningKeyError(RuntimeError):
    """A stored signing key that cannot be used: malformed, or sealed under another secret."""


class UnauthenticKey(SigningKeyError):
    """A stored key whose MAC is missing or does not verify under any configured secret."""


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key pair; ``private_key`` is ``None`` for a verify-only copy."""

    kid: str
    private_key: Ed25519PrivateKey | None
    public_key: Ed25519PublicKey
    created_at: datetime
    generation: int = 0
    retired_at: datetime | None = None  # set by `authnode keys retire`: trusted no more

    def __repr__(self) -> str:
        return (f"SigningKey(kid={self.kid!r}, generation={self.generation}, "
                f"created_at={self.created_at.isoformat()}, "
                f"private={'yes' if self.private_key is not None else 'no'}"
                + (f", retired_at={self.retired_at.isoformat()})" if self.retired_at else ")"))


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


def _derive(secret: Secret, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        secret.reveal().encode("utf-8"))


def _fernet(secret: Secret) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(secret, _HKDF_INFO)))


def _mac(secret: Secret, *, kid: str, generation: int, created_at: datetime,
         x: str) -> bytes:
    """HMAC-SHA256 over everything a verifier relies on: the kid, the algorithm, the
    generation and creation time (which decide which key signs and how long the previous
    one is trusted) and the public key itself."""
    created_ms = (created_at - _EPOCH) // timedelta(milliseconds=1)
    message = json.dumps([_MAC_VERSION, kid, ALGORITHM, generation, created_ms, x],
                         separators=(",", ":")).encode("ascii")
    return hmac.new(_derive(secret, _MAC_HKDF_INFO), message, hashlib.sha256).digest()


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
    """The MongoDB document for ``key`` (``_id`` is the kid), sealed and MACed under
    ``secret``."""
    jwk = public_jwk(key)
    return {
        "_id": key.kid,
        "alg": ALGORITHM,
        "generation": key.generation,
        "sealed_private_key": seal_private_key(key, secret),
        "public_jwk": jwk,
        "created_at": key.created_at,
        "mac": _mac(secret, kid=key.kid, generation=key.generation,
                    created_at=key.created_at, x=jwk["x"]),
    }


@dataclass(frozen=True)
class _Public:
    kid: str
    generation: int
    created_at: datetime
    public_key: Ed25519PublicKey
    x: str
    retired_at: datetime | None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _read_public(doc: Mapping[str, Any]) -> _Public:
    kid = doc.get("_id")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise SigningKeyError("a stored signing key has no valid kid")
    if doc.get("alg") != ALGORITHM:
        raise SigningKeyError(f"signing key {kid} is not an {ALGORITHM} key")
    generation = doc.get("generation")
    created_at = doc.get("created_at")
    if type(generation) is not int or not isinstance(created_at, datetime):
        raise SigningKeyError(f"signing key {kid} has no valid generation or created_at")
    retired_at = doc.get("retired_at")
    if retired_at is not None and not isinstance(retired_at, datetime):
        raise SigningKeyError(f"signing key {kid} has an invalid retired_at")
    jwk = doc.get("public_jwk")
    public_key = public_key_from_jwk(jwk)
    assert isinstance(jwk, Mapping)  # public_key_from_jwk refuses anything else
    return _Public(kid=kid, generation=generation,
                   created_at=_utc_ms(_aware(created_at)),  # a client without tz_aware=True
                   public_key=public_key, x=jwk["x"],
                   retired_at=None if retired_at is None else _utc_ms(_aware(retired_at)))


def _mac_secret(doc: Mapping[str, Any], public: _Public,
                keys: Sequence[Secret]) -> Secret | None:
    """The first of ``keys`` under which the document's MAC verifies, or None."""
    stored = doc.get("mac")
    if not isinstance(stored, bytes):
        return None
    for secret in keys:
        expected = _mac(secret, kid=public.kid, generation=public.generation,
                        created_at=public.created_at, x=public.x)
        if hmac.compare_digest(stored, expected):
            return secret
    return None


def _open_matching(doc: Mapping[str, Any], public: _Public,
                   secret: Secret) -> Ed25519PrivateKey:
    sealed = doc.get("sealed_private_key")
    if not isinstance(sealed, bytes):
        raise SigningKeyError(f"signing key {public.kid} has no sealed private key")
    try:
        private_key = open_private_key(sealed, secret)
    except SigningKeyError as error:
        raise SigningKeyError(f"signing key {public.kid}: {error}") from None
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    if private_key.public_key().public_bytes(*raw) != public.public_key.public_bytes(*raw):
        raise SigningKeyError(f"signing key {public.kid}: private and public halves differ")
    return private_key


def from_document(doc: Mapping[str, Any], keys: Sequence[Secret], *,
                  private: bool = False) -> SigningKey:
    """The key stored in ``doc``, authenticated by its MAC under one of ``keys`` (the
    current SECRET_KEY first); with ``private`` its private half is opened too.

    Raises :class:`UnauthenticKey` when the MAC is missing or wrong, and
    :class:`SigningKeyError` for a malformed document or a private half that cannot be
    opened.
    """
    public = _read_public(doc)
    secret = _mac_secret(doc, public, keys)
    if secret is None:
        raise UnauthenticKey(
            f"signing key {public.kid} carries no valid MAC under SECRET_KEY"
            + (" or SECRET_KEY_PREVIOUS" if len(keys) > 1 else "")
            + ": refused (planted, or written before MACs existed: run `authnode migrate`)")
    private_key = _open_matching(doc, public, secret) if private else None
    return SigningKey(kid=public.kid, private_key=private_key, public_key=public.public_key,
                      created_at=public.created_at, generation=public.generation,
                      retired_at=public.retired_at)


def restamp(doc: Mapping[str, Any], keys: Sequence[Secret]) -> dict[str, Any] | None:
    """The fields to ``$set`` so that ``doc`` is sealed and MACed under ``keys[0]``, or
    None when it already is.

    A document is taken as genuine when its MAC verifies under one of ``keys`` or, for a
    document written before MACs existed, when its private half opens under one of them
    and matches its public half (Fernet is authenticated encryption: only a holder of
    that secret could have sealed it). Anything else raises :class:`UnauthenticKey`.
    """
    public = _read_public(doc)
    secret = _mac_secret(doc, public, keys)
    sealed = doc.get("sealed_private_key")
    if secret is None and "mac" not in doc and isinstance(sealed, bytes):
        for candidate in keys:
            try:
                _open_matching(doc, public, candidate)
            except SigningKeyError:
                continue
            secret = candidate
            break
    if secret is None:
        raise UnauthenticKey(f"signing key {public.kid} cannot be authenticated under "
                             "SECRET_KEY" + (" or SECRET_KEY_PREVIOUS" if len(keys) > 1
                                             else ""))
    if secret is keys[0] and "mac" in doc:
        return None
    fields: dict[str, Any] = {"mac": _mac(keys[0], kid=public.kid,
                                          generation=public.generation,
                                          created_at=public.created_at, x=public.x)}
    if isinstance(sealed, bytes):
        private_key = _open_matching(doc, public, secret)
        fields["sealed_private_key"] = _fernet(keys[0]).encrypt(private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption()))
    return fields
