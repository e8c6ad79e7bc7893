"""The ID-token validator, with keys made here (joserfc): each forgery is refused with
``invalid_id_token`` and a message saying why; an unknown ``kid`` asks for a refetch."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from authnode.oidc.errors import InvalidIdToken
from authnode.oidc.idtoken import LEEWAY_S, UnknownKey, validate_id_token, verified_email

ISSUER = "https://idp.example.test"
CLIENT = "authnode-client"
NONCE = "n-0S6_WzA2Mj"
NOW = 1_800_000_000

KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, another key
JWKS = KeySet([KEY]).as_dict(private=False)


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": CLIENT, "sub": "248289761001", "nonce": NONCE,
            "iat": NOW - 10, "exp": NOW + 300, "email": "ann@example.com",
            "email_verified": True}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = KEY, alg: str = "RS256",
         kid: str | None = "k1") -> str:
    header = {"alg": alg, **({"kid": kid} if kid else {})}
    return jwt.encode(header, payload, key, algorithms=[alg])


def validate(token: str, *, algorithms: tuple[str, ...] = ("RS256",),
             nonce: str = NONCE, jwks: dict[str, Any] = JWKS) -> dict[str, Any]:
    return validate_id_token(token, jwks=jwks, issuer=ISSUER, client_id=CLIENT,
                             nonce=nonce, algorithms=algorithms, now=NOW)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_valid_token_gives_its_claims() -> None:
    found = validate(sign(claims()))
    assert found["sub"] == "248289761001" and verified_email(found) == "ann@example.com"


def test_a_token_signed_by_another_key_with_the_same_kid_is_refused() -> None:
    with pytest.raises(InvalidIdToken, match="signature"):
        validate(sign(claims(), key=OTHER))


def test_an_unknown_kid_asks_for_the_keys_again() -> None:
    with pytest.raises(UnknownKey):
        validate(sign(claims(), key=RSAKey.generate_key(2048), kid="k2"))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(alg: str) -> None:
    token = f"{_b64({'alg': alg, 'kid': 'k1'})}.{_b64(claims())}."
    with pytest.raises(InvalidIdToken, match="algorithm"):
        validate(token, algorithms=("RS256", alg))  # even if a document listed it


def test_hmac_with_the_public_key_as_secret_is_refused() -> None:
    secret = OctKey.import_key(json.dumps(JWKS["keys"][0]).encode())
    token = sign(claims(), key=secret, alg="HS256")
    with pytest.raises(InvalidIdToken, match="algorithm"):
        validate(token)


def test_an_algorithm_outside_the_providers_list_is_refused() -> None:
    ec = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    with pytest.raises(InvalidIdToken, match="algorithm"):
        validate(sign(claims(), key=ec, alg="ES256"))


def test_a_wrong_audience_is_refused() -> None:
    with pytest.raises(InvalidIdToken, match="aud"):
        validate(sign(claims(aud="another-client")))


def test_several_audiences_need_azp_to_be_ours() -> None:
    with pytest.raises(InvalidIdToken, match="azp"):
        validate(sign(claims(aud=[CLIENT, "other"])))
    assert validate(sign(claims(aud=[CLIENT, "other"], azp=CLIENT)))["sub"]


def test_an_expired_token_is_refused_past_the_leeway() -> None:
    assert validate(sign(claims(exp=NOW - LEEWAY_S + 1)))
    with pytest.raises(InvalidIdToken, match="expired"):
        validate(sign(claims(exp=NOW - LEEWAY_S - 1)))
    with pytest.raises(InvalidIdToken, match="exp"):
        validate(sign(claims(exp=None)))


def test_a_token_from_the_future_is_refused() -> None:
    with pytest.raises(InvalidIdToken, match="future"):
        validate(sign(claims(iat=NOW + LEEWAY_S + 5)))


def test_another_nonce_or_none_is_refused() -> None:
    with pytest.raises(InvalidIdToken, match="nonce"):
        validate(sign(claims()), nonce="another sign-in's nonce")
    with pytest.raises(InvalidIdToken, match="nonce"):
        validate(sign(claims(nonce=None)))


def test_another_issuer_or_no_subject_is_refused() -> None:
    with pytest.raises(InvalidIdToken, match="issuer"):
        validate(sign(claims(iss="https://evil.example.test")))
    with pytest.raises(InvalidIdToken, match="sub"):
        validate(sign(claims(sub=None)))


@pytest.mark.parametrize("token", ["", "a.b", "not.a.jwt", "a" * 20000, "..",
                                   f"{_b64({'alg': 'RS256'})}.e30.AAAA"])
def test_garbage_is_refused_never_raised_otherwise(token: str) -> None:
    with pytest.raises(InvalidIdToken):
        validate(token)


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = sign(claims()).split(".")
    forged = f"{header}.{_b64(claims(sub='admin'))}.{signature}"
    with pytest.raises(InvalidIdToken, match="signature"):
        validate(forged)


@pytest.mark.parametrize(("email_verified", "expected"), [
    (True, "ann@example.com"), ("true", "ann@example.com"), (False, None), ("false", None),
    (None, None), (1, None)])
def test_only_a_verified_email_is_used(email_verified: Any, expected: str | None) -> None:
    assert verified_email(claims(email_verified=email_verified)) == expected
