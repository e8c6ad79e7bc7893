"""Access tokens: short-lived EdDSA (Ed25519) JWTs.

:meth:`AccessTokens.verify` raises :class:`~authnode.errors.InvalidToken` for anything
wrong with the token, whatever the input. Before PyJWT sees a token, cheap checks of our
own reject it unless it is short, has three canonical base64url parts and a header that
is exactly what :meth:`AccessTokens.issue` writes: ``alg`` pinned to ``EdDSA`` (so
``none``, HS256 keyed with the public key, RS*/ES* and other algorithm-confusion tricks
never reach signature code), a well-formed ``kid`` and ``typ`` ``JWT``. PyJWT then checks
the signature with the cached key object for that kid, and the claims are checked here
against the injected clock.

A token that verified once is remembered (by its SHA-256, in a bounded table) until it
expires, so a client's repeated requests skip the header parsing and the Ed25519 check
(about a tenth of the CPU of a GET /v1/users/me, bench/README.md). Every use of a
remembered token asks the key ring again whether its key is still trusted, so a retired
key (or a previous key past its trust window) ends its tokens at once. Revocation is not
cached: callers check it in Redis on every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authnode.errors import InvalidToken
from authnode.tokens.keyring import CLOCK_SKEW_S, KeyRing
from authnode.tokens.signing_keys import ALGORITHM, KID_PATTERN

MAX_TOKEN_CHARS = 4096
MAX_HEADER_CHARS = 512
MAX_CLAIM_CHARS = 256
LEEWAY_S = CLOCK_SKEW_S  # the key ring's trust of a previous key allows for it too
_JTI_BYTES = 16
VERIFIED_CACHE_SIZE = 8192

_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_HEADER_KEYS = frozenset({"alg", "kid", "typ"})
_STRING_CLAIMS = ("iss", "sub", "sid", "jti")
_TIME_CLAIMS = ("iat", "exp")


# RFC 8176 method names authnode issues: password, one-time code (TOTP or recovery code),
# hardware-bound key (a passkey).
# "ext": signed in by an OpenID Connect provider (authnode/oidc).
AMR_VALUES = frozenset({"pwd", "otp", "hwk", "ext"})
MAX_AMR = 4


@dataclass(frozen=True)
class Assurance:
    """How the session's user last proved who they are: ``amr`` (RFC 8176), ``aal`` (1: one
    factor; 2: two, or a passkey that verified the user) and when (``auth_time``, epoch s)."""

    amr: tuple[str, ...] = ("pwd",)
    aal: int = 1
    auth_time: int | None = None


@dataclass(frozen=True)
class AccessClaims:
    sub: str
    sid: str
    iat: int
    exp: int
    jti: str
    assurance: Assurance = Assurance()


def _b64url_decode_canonical(segment: str) -> bytes:
    """Decode unpadded base64url, rejecting encodings that are not the canonical one
    (unused trailing bits set), so one token has exactly one spelling."""
    if len(segment) % 4 == 1:
        raise ValueError("impossible base64url length")
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != segment:
        raise ValueError("non-canonical base64url")
    return data


def _check_header(token: str) -> str:
    """Shape and header checks that need no key; returns the kid."""
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN_SHAPE.fullmatch(token):
        raise InvalidToken()
    header_segment = token.partition(".")[0]
    if len(header_segment) > MAX_HEADER_CHARS:
        raise InvalidToken()
    try:
        header = json.loads(_b64url_decode_canonical(header_segment).decode("utf-8"))
    except (ValueError, binascii.Error, RecursionError):
        raise InvalidToken() from None
    if (
        not isinstance(header, dict)
        or not header.keys() <= _HEADER_KEYS
        or header.get("alg") != ALGORITHM
        or header.get("typ", "JWT") != "JWT"
    ):
        raise InvalidToken()
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise InvalidToken()
    return kid


def _check_claims(claims: object, *, issuer: str, now: float) -> AccessClaims:
    if not isinstance(claims, dict):
        raise InvalidToken()
    for name in _STRING_CLAIMS:
        value = claims.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_CLAIM_CHARS:
            raise InvalidToken()
    for name in _TIME_CLAIMS:
        if type(claims.get(name)) is not int:  # bool is an int subclass: excluded
            raise InvalidToken()
    iat: int = claims["iat"]
    exp: int = claims["exp"]
    if claims["iss"] != issuer:
        raise InvalidToken()
    if exp <= now - LEEWAY_S or iat > now + LEEWAY_S or exp <= iat:
        raise InvalidToken()
    return AccessClaims(sub=claims["sub"], sid=claims["sid"], iat=iat, exp=exp,
                        jti=claims["jti"], assurance=_check_assurance(claims, iat))


def _check_assurance(claims: dict[str, Any], iat: int) -> Assurance:
    """The ``amr``/``aal``/``auth_time`` claims; a token without them (issued before second
    factors existed) is a password login of unknown time."""
    if "amr" not in claims and "aal" not in claims and "auth_time" not in claims:
        return Assurance()
    amr, aal, auth_time = claims.get("amr"), claims.get("aal"), claims.get("auth_time")
    if (not isinstance(amr, list) or not 0 < len(amr) <= MAX_AMR
            or not all(isinstance(m, str) and m in AMR_VALUES for m in amr)
            or type(aal) is not int or aal not in (1, 2)
            or type(auth_time) is not int or auth_time > iat):
        raise InvalidToken()
    return Assurance(amr=tuple(amr), aal=aal, auth_time=auth_time)


class AccessTokens:
    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least 1")
        if not issuer or len(issuer) > MAX_CLAIM_CHARS:
            raise ValueError(f"issuer must be 1 to {MAX_CLAIM_CHARS} characters")
        self._keyring = keyring
        self._issuer = issuer
        self._ttl_s = ttl_s
        self._clock = clock
        # A PyJWS that knows no algorithm but EdDSA: a second lock on algorithm confusion.
        self._jws = jwt.PyJWS(algorithms=[ALGORITHM])
        # SHA-256 of a token that verified -> its claims; oldest first, bounded.
        self._verified: dict[bytes, tuple[AccessClaims, str, Ed25519PublicKey]] = {}

    async def issue(self, user_id: str, session_id: str,
                    assurance: Assurance | None = None) -> tuple[str, int]:
        """A signed token for ``user_id`` in ``session_id``, and its lifetime in seconds."""
        for name, value in (("user_id", user_id), ("session_id", session_id)):
            if not isinstance(value, str) or not 0 < len(value) <= MAX_CLAIM_CHARS:
                raise ValueError(f"{name} must be 1 to {MAX_CLAIM_CHARS} characters")
        await self._keyring.maybe_refresh()
        key = self._keyring.current_signing_key()
        if key.private_key is None:
            raise RuntimeError(f"signing key {key.kid} has no private half")
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self._issuer, "sub": user_id, "sid": session_id,
            "iat": now, "exp": now + self._ttl_s, "jti": secrets.token_urlsafe(_JTI_BYTES),
        }
        if assurance is not None:
            auth_time = min(assurance.auth_time if assurance.auth_time is not None else now,
                            now)
            claims.update(amr=list(assurance.amr), aal=assurance.aal, auth_time=auth_time)
        payload = json.dumps(claims, separators=(",", ":")).encode("utf-8")
        token = self._jws.encode(payload, key.private_key, algorithm=ALGORITHM,
                                 headers={"kid": key.kid})
        return token, self._ttl_s

    async def verify(self, token: object) -> AccessClaims:
        """The claims of a valid token; :class:`InvalidToken` for anything else.

        May raise :class:`~authnode.errors.Unavailable` only while re-reading the key store
        for a kid not seen before (throttled by the key ring).
        """
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken()
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        known = self._verified.get(digest)
        if known is not None:
            claims, kid, key = known
            now = self._clock()
            await self._keyring.maybe_refresh()
            # Still within the time rules of _check_claims, and its key still trusted
            # (not retired, not a previous key past its window).
            if (claims.exp > now - LEEWAY_S and claims.iat <= now + LEEWAY_S
                    and await self._keyring.public_key_for(kid) is key):
                return claims
            del self._verified[digest]
        claims, kid, key = await self._verify_uncached(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[digest] = (claims, kid, key)
        return claims

    async def _verify_uncached(self, token: str) -> tuple[AccessClaims, str, Ed25519PublicKey]:
        kid = _check_header(token)
        await self._keyring.maybe_refresh()
        public_key = await self._keyring.public_key_for(kid)
        if public_key is None:
            raise InvalidToken()
        # The signature is checked here with the key ring's key object, not by PyJWS:
        # _check_header has already vetted the shape and header that PyJWS would parse
        # again, and PyJWS tests each base64 character in Python (a third of the CPU of a
        # GET /v1/users/me, measured; see bench/README.md).
        signing_input, _, signature_segment = token.rpartition(".")
        try:
            signature = _b64url_decode_canonical(signature_segment)
            payload = _b64url_decode_canonical(signing_input.partition(".")[2])
            public_key.verify(signature, signing_input.encode("ascii"))
            claims = json.loads(payload)
        except (InvalidSignature, ValueError, binascii.Error, TypeError, RecursionError):
            raise InvalidToken() from None
        return _check_claims(claims, issuer=self._issuer, now=self._clock()), kid, public_key
