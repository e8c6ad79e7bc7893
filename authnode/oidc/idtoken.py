"""Checking a provider's ID token (OpenID Connect Core 3.1.3.7), with joserfc.

Refused, each with a message saying why (:class:`InvalidIdToken`): a token that is not a
signed JWT; an ``alg`` outside the provider's discovery list (``none`` and HMAC never
are in it: :data:`~authnode.oidc.discovery.SUPPORTED_ALGORITHMS`); a signature that no
key of the provider's key set verifies; another ``iss``; an ``aud`` without our client
id (or several audiences and ``azp`` not ours); no ``exp`` or ``exp`` past; ``iat`` in
the future; no ``sub``; a ``nonce`` other than the one this sign-in sent. A ``kid`` the
key set does not have is :class:`UnknownKey`, so the caller can fetch the keys again.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Collection
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from authnode.oidc.errors import InvalidIdToken

LEEWAY_S = 60  # clock skew between the provider and us
MAX_TOKEN_CHARS = 16 * 1024


class UnknownKey(InvalidIdToken):
    default_message = "The ID token is signed with a key the provider does not publish."


def _header(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise InvalidIdToken("The ID token is not a signed JWT.")
    encoded = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except ValueError:
        raise InvalidIdToken("The ID token's header is not readable.") from None
    if not isinstance(header, dict):
        raise InvalidIdToken("The ID token's header is not readable.")
    return header


def validate_id_token(token: str, *, jwks: dict[str, Any], issuer: str, client_id: str,
                      nonce: str, algorithms: Collection[str], now: float) -> dict[str, Any]:
    """The claims of ``token`` once every check has passed."""
    header = _header(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg.lower() == "none":
        raise InvalidIdToken(f"The ID token's algorithm {alg!r} is not one the provider "
                             "publishes for ID tokens.")
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidIdToken("The provider's key set cannot be read.") from None
    kid = header.get("kid")
    if kid is not None:
        if not isinstance(kid, str) or not any(k.kid == kid for k in keys.keys):
            raise UnknownKey()
    try:
        decoded = jwt.decode(token, keys, algorithms=[alg])
    except JoseError:
        raise InvalidIdToken("The ID token's signature does not verify.") from None
    except (ValueError, TypeError):
        raise InvalidIdToken("The ID token is not a signed JWT.") from None
    return check_claims(decoded.claims, issuer=issuer, client_id=client_id, nonce=nonce,
                        now=now)


def check_claims(claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str,
                 now: float) -> dict[str, Any]:
    if claims.get("iss") != issuer:
        raise InvalidIdToken("The ID token was issued by another issuer.")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or client_id not in audiences:
        raise InvalidIdToken("The ID token is meant for another client (aud).")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise InvalidIdToken("The ID token has several audiences and azp is not ours.")
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        raise InvalidIdToken("The ID token has no expiry (exp).")
    if expires + LEEWAY_S < now:
        raise InvalidIdToken("The ID token has expired.")
    issued = claims.get("iat")
    if isinstance(issued, int | float) and issued - LEEWAY_S > now:
        raise InvalidIdToken("The ID token was issued in the future (iat).")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise InvalidIdToken("The ID token has no usable subject (sub).")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise InvalidIdToken("The ID token's nonce is not this sign-in's.")
    return claims


def verified_email(claims: dict[str, Any]) -> str | None:
    """The address, only when the provider says it is verified (``email_verified`` true;
    some providers send the string ``"true"``). Anything else: None."""
    email = claims.get("email")
    verified = claims.get("email_verified")
    if isinstance(email, str) and email and (verified is True or verified == "true"):
        return email
    return None
