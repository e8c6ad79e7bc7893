"""Passkeys (WebAuthn), through py_webauthn: the options a browser needs and the checks of
what it sends back. Pure: the caller keeps challenges (single use, in Redis) and
credentials (with the user).

The relying party is ``PUBLIC_URL``: its host is the RP ID and its origin the only origin
accepted, so a credential made for authnode works on no other site and vice versa.
Attestation is not asked for ("none"): authnode trusts the user, not the maker of the
authenticator. Sign counters must grow when an authenticator keeps one (a counter that
goes back means a cloned authenticator: refused by py_webauthn). A passkey used alone
(passwordless) must have verified the user (PIN or biometric); as a second factor after
the password, presence is enough.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidCBORData,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

TIMEOUT_MS = 300_000  # matches the challenge's lifetime in Redis
MAX_CREDENTIAL_JSON_CHARS = 16_384


class PasskeyError(ValueError):
    """What the browser sent does not verify; the message says why (safe to show)."""


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    origin: str

    @classmethod
    def for_public_url(cls, public_url: str, name: str = "authnode") -> RelyingParty:
        parts = urlsplit(public_url)
        if not parts.hostname:
            raise ValueError("PUBLIC_URL has no host")
        return cls(id=parts.hostname, name=name, origin=f"{parts.scheme}://{parts.netloc}")


@dataclass(frozen=True)
class NewPasskey:
    credential_id: str  # base64url
    public_key: bytes  # COSE
    sign_count: int
    backed_up: bool


@dataclass(frozen=True)
class Options:
    """``public_key``: the JSON the browser passes to ``navigator.credentials``;
    ``challenge``: to keep until the answer comes."""

    public_key: dict[str, Any]
    challenge: bytes


def _descriptors(credential_ids: list[str]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(cid)) for cid in credential_ids]


def _as_json(options: object) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(options_to_json(options))  # type: ignore[arg-type]
    return result


def registration_options(rp: RelyingParty, *, user_id: str, user_name: str,
                         existing: list[str]) -> Options:
    """Options to create a discoverable credential (so it can log in without a password)
    for ``user_id``; ``existing`` credential ids are excluded (no duplicate on one device)."""
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_id=user_id.encode("utf-8"), user_name=user_name,
        user_display_name=user_name, timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, require_resident_key=True,
            user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=_descriptors(existing))
    return Options(_as_json(options), options.challenge)


def authentication_options(rp: RelyingParty, *, allowed: list[str] | None) -> Options:
    """``allowed``: the user's credential ids (second factor); None: any discoverable
    credential for this site (passwordless), which must verify the user."""
    options = generate_authentication_options(
        rp_id=rp.id, timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(allowed) if allowed is not None else None,
        user_verification=(UserVerificationRequirement.PREFERRED if allowed is not None
                           else UserVerificationRequirement.REQUIRED))
    return Options(_as_json(options), options.challenge)


def _checked(credential: object) -> dict[str, Any]:
    if not isinstance(credential, dict):
        raise PasskeyError("credential: expected the PublicKeyCredential as a JSON object")
    if len(json.dumps(credential)) > MAX_CREDENTIAL_JSON_CHARS:
        raise PasskeyError("credential: too large")
    return credential


def challenge_of(credential: object) -> bytes:
    """The challenge the browser signed (from clientDataJSON), to find what it was for."""
    body = _checked(credential)
    try:
        client_data = json.loads(base64url_to_bytes(body["response"]["clientDataJSON"]))
        return base64url_to_bytes(client_data["challenge"])
    except (KeyError, TypeError, ValueError) as error:
        raise PasskeyError("credential: no readable clientDataJSON challenge") from error


def credential_id_of(credential: object) -> str:
    body = _checked(credential)
    raw = body.get("id")
    if not isinstance(raw, str) or not raw or len(raw) > 1024:
        raise PasskeyError("credential: expected an id")
    return raw


def user_handle_of(credential: object) -> str | None:
    """The user id a discoverable credential names (passwordless login)."""
    body = _checked(credential)
    response = body.get("response")
    handle = response.get("userHandle") if isinstance(response, dict) else None
    if not isinstance(handle, str) or not handle:
        return None
    try:
        return base64url_to_bytes(handle).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


_VERIFY_ERRORS = (InvalidRegistrationResponse, InvalidAuthenticationResponse, InvalidCBORData,
                  InvalidJSONStructure, KeyError, TypeError, ValueError)


def verify_registration(rp: RelyingParty, credential: object, challenge: bytes) -> NewPasskey:
    try:
        verified = verify_registration_response(
            credential=_checked(credential), expected_challenge=challenge,
            expected_rp_id=rp.id, expected_origin=rp.origin)
    except PasskeyError:
        raise
    except _VERIFY_ERRORS as error:
        raise PasskeyError(f"credential: {error}") from None
    return NewPasskey(credential_id=bytes_to_base64url(verified.credential_id),
                      public_key=verified.credential_public_key,
                      sign_count=verified.sign_count,
                      backed_up=verified.credential_backed_up)


def verify_authentication(rp: RelyingParty, credential: object, challenge: bytes, *,
                          public_key: bytes, sign_count: int,
                          require_user_verification: bool) -> int:
    """Check an assertion against the stored key; returns the new sign count."""
    try:
        verified = verify_authentication_response(
            credential=_checked(credential), expected_challenge=challenge,
            expected_rp_id=rp.id, expected_origin=rp.origin,
            credential_public_key=public_key, credential_current_sign_count=sign_count,
            require_user_verification=require_user_verification)
    except PasskeyError:
        raise
    except _VERIFY_ERRORS as error:
        raise PasskeyError(f"credential: {error}") from None
    return verified.new_sign_count
