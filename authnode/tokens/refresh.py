"""Refresh-token primitives: pure functions, no I/O.

A refresh token is opaque: ``rt_<session_id>.<secret>``, the secret 256 random bits as
43 base64url characters. The session id lets the server find the session in one indexed
read; only ``hash_refresh_token(token)`` (SHA-256; the secret's entropy makes a salt or a
slow hash pointless) is stored, so a database dump yields no usable token.

Rotation and concurrent refreshes
---------------------------------
Every refresh replaces the token. A client that sends the same refresh request twice at
once (two tabs, a retry after a timeout) must not be treated as a thief: within
``REFRESH_REUSE_GRACE_S`` the second request should get the very *same* new token the
first one got. Storing that new token in plain to hand it out again would defeat hashing.

Instead the successor is *derived*::

    successor = "rt_<sid>." + b64url(HMAC-SHA256(key, old_token + "|" + nonce))

At rotation the server draws a fresh random ``nonce``, stores it in plain on the session
together with the successor's hash, and returns the successor. A second request with the
same old token inside the grace window recomputes the identical successor from the token
it presents (which the server never stored), the stored nonce and the server key (from
SECRET_KEY). None of the three alone gives the successor: the database holds the nonce
but not the old token or the key; the old token alone lacks the nonce and the key.
Outside the grace window, or for a token that does not hash to the session's previous
token, reuse means theft and the session is revoked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authnode.errors import InvalidToken
from authnode.settings import Secret

PREFIX = "rt_"
SECRET_BYTES = 32
SECRET_CHARS = 43  # 32 bytes of unpadded base64url, for both random and derived secrets
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"rt_([A-Za-z0-9_-]{1,64})\.[A-Za-z0-9_-]{43}")
MAX_TOKEN_CHARS = len(PREFIX) + 64 + 1 + SECRET_CHARS
_HKDF_INFO = b"authnode refresh v1"


def _check_session_id(session_id: str) -> None:
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise ValueError("session id must be 1 to 64 base64url characters")


def new_refresh_token(session_id: str) -> str:
    _check_session_id(session_id)
    return f"{PREFIX}{session_id}.{secrets.token_urlsafe(SECRET_BYTES)}"


def new_rotation_nonce() -> str:
    """The per-rotation nonce stored in plain on the session (see the module docstring)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def parse_refresh_token(token: object) -> str:
    """The session id inside ``token``; :class:`InvalidToken` if it is malformed."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken()
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise InvalidToken()
    return match.group(1)


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex of the whole token: the only form stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def successor_token(token: str, nonce: str, key: bytes, session_id: str) -> str:
    """The token that replaces ``token`` when it is rotated with ``nonce``."""
    _check_session_id(session_id)
    if parse_refresh_token(token) != session_id:
        raise ValueError("the token belongs to another session")
    if not nonce or "|" in nonce:
        raise ValueError("nonce must be a non-empty string without '|'")
    if len(key) < 32:
        raise ValueError("key must be at least 32 bytes")
    mac = hmac.new(key, f"{token}|{nonce}".encode(), hashlib.sha256).digest()
    return f"{PREFIX}{session_id}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"


def refresh_key_from_secret(secret: Secret) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.reveal().encode("utf-8"))


def hashes_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two token hashes."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
