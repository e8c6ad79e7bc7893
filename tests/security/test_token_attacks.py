"""Hostile input 7: forged, tampered, stale and orphaned tokens are refused.

Against a real server: ``GET /v1/users/me`` with each forged access
token must answer 401 ``invalid_token`` with a ``WWW-Authenticate: Bearer`` challenge, and
``POST /v1/auth/refresh`` with a refresh token of a deleted user, or one used after
logout-all, must answer 401 ``invalid_token``.

The two attacks that need a *genuinely signed* token with one bad property use a second
API process of the same deployment (same signing keys in MongoDB) started with one
setting changed: ``PUBLIC_URL`` (so it issues tokens whose ``iss`` is wrong for the main
process) and ``ACCESS_TOKEN_TTL=1`` (so its tokens expire). Each of those tokens is first
shown to be accepted where it should be (control), so the refusal is about that one claim.

In-process (no server) Hypothesis properties add what ``tests/unit/tokens`` does not
already cover (it has arbitrary text, arbitrary bytes and mutations of a valid token for
``AccessTokens.verify``, and arbitrary text for ``parse_refresh_token``): structurally
valid JWS whose header or payload is *arbitrary JSON* signed with the real key (so the
claim and header checks see every JSON type, nesting, huge numbers and odd strings),
well-formed tokens with arbitrary kids (the unknown-kid refresh path), and refresh-token
look-alikes drawn close to the real shape.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authnode.errors import InvalidToken
from authnode.settings import Secret
from authnode.tokens.access import AccessTokens
from authnode.tokens.keyring import KeyRing
from authnode.tokens.refresh import parse_refresh_token
from tests.acceptance.test_accounts_support import (
    PASSWORD,
    assert_access_works,
    assert_error,
    assert_tokens,
    bearer,
    describe,
    login,
    register,
    register_verified,
    verification_token,
    verify,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder, wait_until
from tests.unit.tokens._fakes import FakeClock, MemoryKeyStore

EXPIRY_TIMEOUT_S = 20.0


# ----------------------------------------------------------------------------- helpers


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    head, body, sig = token.split(".")
    return json.loads(_unb64(head)), json.loads(_unb64(body)), _unb64(sig)


def _jws(header: dict[str, Any], payload: dict[str, Any] | bytes, sign: Any) -> str:
    body = payload if isinstance(payload, bytes) else _json(payload)
    signing_input = f"{_b64(_json(header))}.{_b64(body)}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _hs256(secret: bytes) -> Any:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def _flip_char(segment: str, index: int) -> str:
    """Replace one base64url character by another that changes the decoded bytes (the
    character at ``index`` is never the last, whose low bits may be padding)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    old = segment[index]
    new = alphabet[(alphabet.index(old) + 17) % 64]
    return segment[:index] + new + segment[index + 1:]


def assert_refused(client: httpx.Client, token: str, why: str) -> None:
    response = client.get("/v1/users/me", headers=bearer(token))
    assert response.status_code == 401, f"{why}: ACCEPTED: {describe(response)}"
    assert_error(response, 401, "invalid_token")
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.split(" ")[0] == "Bearer", f"{why}: challenge {challenge!r}"


def _start_variant(env: AuthnodeEnv, **overrides: str) -> AuthnodeProcess:
    return env.with_overrides(**overrides).start("api", wait=False, name="variant")


# ----------------------------------------------------------------------------- access tokens


# Every forgery is refused by the signature and header checks, before Redis is asked
# anything: one Redis mode is enough here (the refresh test below, which goes through the
# revocation marks in Redis, runs in both).
@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_forged_access_tokens_are_refused(authnode_env: AuthnodeEnv,
                                          smtp: SmtpRecorder) -> None:
    main = authnode_env.start("all")
    # Same deployment, same keys; one setting differs in each.
    foreign = _start_variant(authnode_env, PUBLIC_URL="http://evil.example.test")
    short = _start_variant(authnode_env, ACCESS_TOKEN_TTL="1")
    try:
        foreign.wait_ready()
        short.wait_ready()
        _forgeries(main, foreign, short, smtp)
    finally:
        for process in (short, foreign):
            process.kill()
        code = main.stop()
    assert code == 0, main.logs()[-3000:]


def _forgeries(main: AuthnodeProcess, foreign: AuthnodeProcess, short: AuthnodeProcess,
               smtp: SmtpRecorder) -> None:
    client = main.client
    email, _ = register_verified(client, smtp, prefix="forge")
    tokens = login(client, email)
    token = tokens["access_token"]
    assert_access_works(client, token, "the genuine token")
    header, claims, signature = _parts(token)
    head_b64, body_b64, sig_b64 = token.split(".")

    jwks = client.get("/.well-known/jwks.json").json()["keys"]
    jwk = next(key for key in jwks if key["kid"] == header["kid"])
    raw_public = _unb64(jwk["x"])
    pem = Ed25519PublicKey.from_public_bytes(raw_public).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    intruder = Ed25519PrivateKey.generate()
    hs_header = {"alg": "HS256", "kid": header["kid"], "typ": "JWT"}
    unknown_kid = "kAAAAAAAAAAAAAAAAAAAAA"
    assert unknown_kid not in {key["kid"] for key in jwks}

    better = dict(claims, exp=claims["exp"] + 86400)
    bit_flipped = signature[:10] + bytes([signature[10] ^ 1]) + signature[11:]
    forged: dict[str, str] = {
        "alg none, empty signature": f"{_b64(_json({**header, 'alg': 'none'}))}.{body_b64}.",
        "alg none, original signature":
            f"{_b64(_json({**header, 'alg': 'none'}))}.{body_b64}.{sig_b64}",
        "alg none, no kid, empty signature":
            f"{_b64(_json({'alg': 'none', 'typ': 'JWT'}))}.{body_b64}.",
        "HS256 keyed with the raw public key bytes (x)": _jws(hs_header, claims,
                                                              _hs256(raw_public)),
        "HS256 keyed with the x text": _jws(hs_header, claims, _hs256(jwk["x"].encode())),
        "HS256 keyed with the PEM public key": _jws(hs_header, claims, _hs256(pem)),
        "HS256 keyed with the JWK JSON": _jws(hs_header, claims,
                                              _hs256(json.dumps(jwk).encode())),
        "HS256 keyed with the compact JWK JSON": _jws(hs_header, claims,
                                                      _hs256(_json(jwk))),
        "one character changed in the payload":
            f"{head_b64}.{_flip_char(body_b64, len(body_b64) // 2)}.{sig_b64}",
        "payload with a later exp, original signature":
            f"{head_b64}.{_b64(_json(better))}.{sig_b64}",
        "one byte changed in the signature":
            f"{head_b64}.{body_b64}.{_b64(bit_flipped)}",
        "one character changed in the signature":
            f"{head_b64}.{body_b64}.{_flip_char(sig_b64, 5)}",
        "signature removed": f"{head_b64}.{body_b64}.",
        "kid that does not exist, original signature":
            f"{_b64(_json({**header, 'kid': unknown_kid}))}.{body_b64}.{sig_b64}",
        "kid missing, original signature":
            f"{_b64(_json({'alg': 'EdDSA', 'typ': 'JWT'}))}.{body_b64}.{sig_b64}",
        "Ed25519 key not in the JWKS, same kid as the real key":
            _jws(header, claims, intruder.sign),
        "Ed25519 key not in the JWKS, a new kid":
            _jws({**header, "kid": unknown_kid}, claims, intruder.sign),
        "Ed25519 key not in the JWKS, its JWK embedded in the header":
            _jws({**header, "jwk": {"kty": "OKP", "crv": "Ed25519", "x": _b64(
                intruder.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw))}},
                 claims, intruder.sign),
        "ES256 header over the EdDSA signature":
            f"{_b64(_json({**header, 'alg': 'ES256'}))}.{body_b64}.{sig_b64}",
    }
    for why, candidate in forged.items():
        assert_refused(client, candidate, why)

    # Wrong iss: genuinely signed by the deployment's key, by a process whose PUBLIC_URL
    # differs. Control: that process accepts it; the main one must not.
    foreign_tokens = login(foreign.client, email)
    foreign_token = foreign_tokens["access_token"]
    assert _parts(foreign_token)[1]["iss"] == "http://evil.example.test"
    assert_access_works(foreign.client, foreign_token, "control: the issuing process")
    assert_refused(client, foreign_token, "a token with a wrong iss")

    # Expired: issued with ACCESS_TOKEN_TTL=1 by the same deployment; accepted at first,
    # refused by every process once exp (plus the verifier's leeway) has passed.
    issued_at = time.time()
    short_token = login(short.client, email)["access_token"]
    short_claims = _parts(short_token)[1]
    assert short_claims["exp"] - short_claims["iat"] == 1
    assert_access_works(client, short_token, "control: a fresh 1-second token")

    def refused() -> bool:
        return client.get("/v1/users/me", headers=bearer(short_token)).status_code == 401

    wait_until(refused, EXPIRY_TIMEOUT_S, "the 1-second token to expire")
    lifetime = time.time() - issued_at
    assert time.time() >= short_claims["exp"], "refused before its exp"
    assert_refused(client, short_token, "an expired token")
    assert_refused(short.client, short_token, "an expired token, at its issuer")

    # Nothing above may have harmed the genuine token.
    assert_access_works(client, token, "the genuine token after the attacks")
    print(f"\ntoken attacks: {len(forged) + 2} forged/stale access tokens refused with 401 "
          f"(+ controls accepted); 1-second token refused after {lifetime:.1f}s "
          f"(exp + verifier leeway)")


# ----------------------------------------------------------------------------- refresh tokens


def test_refresh_tokens_of_deleted_users_and_after_logout_all_are_refused(
        authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    client = authnode.client

    # A deleted user: the refresh token (and access token) of the account die with it.
    doomed_email, _ = register_verified(client, smtp, prefix="doomed")
    doomed = login(client, doomed_email)
    gone = client.request("DELETE", "/v1/users/me", headers=bearer(doomed["access_token"]),
                          json={"password": PASSWORD})
    assert gone.status_code == 204, describe(gone)
    refused = client.post("/v1/auth/refresh", json={"refresh_token": doomed["refresh_token"]})
    assert_error(refused, 401, "invalid_token")
    assert_refused(client, doomed["access_token"], "access token of a deleted user")
    # Registering the same address again must not resurrect the old refresh token.
    register(client, doomed_email)
    verify(client, verification_token(smtp, doomed_email, count=2))
    assert_tokens(client.post("/v1/auth/login",
                              json={"email": doomed_email, "password": PASSWORD}))
    again = client.post("/v1/auth/refresh", json={"refresh_token": doomed["refresh_token"]})
    assert_error(again, 401, "invalid_token")

    # Logout-all: every refresh token of every session of the user dies, including ones
    # rotated before, and the session that asked.
    email, _ = register_verified(client, smtp, prefix="everywhere")
    first = login(client, email, user_agent="laptop")
    second = login(client, email, user_agent="phone")
    rotated = client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert rotated.status_code == 200, describe(rotated)
    live_refresh = rotated.json()["refresh_token"]
    done = client.post("/v1/auth/logout-all", headers=bearer(first["access_token"]))
    assert done.status_code == 204, describe(done)
    checked = 0
    for why, refresh_token in (("the asking session", first["refresh_token"]),
                               ("another session's live token", live_refresh),
                               ("another session's rotated token", second["refresh_token"])):
        response = client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
        assert response.status_code == 401, f"after logout-all, {why}: {describe(response)}"
        assert_error(response, 401, "invalid_token")
        checked += 1
    for why, access in (("the asking session", first["access_token"]),
                        ("the other session", rotated.json()["access_token"])):
        assert_refused(client, access, f"access token after logout-all: {why}")
    print(f"\nrefresh attacks: deleted user's refresh token refused (also after the address "
          f"re-registered); {checked} refresh and 2 access tokens refused after logout-all")


# ----------------------------------------------------------------------------- properties
# In-process, no server: what tests/unit/tokens does not already cover.

ISSUER = "http://auth.example.test"
_PROPERTY = settings(max_examples=200, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_claim_names = st.sampled_from(["iss", "sub", "sid", "iat", "exp", "jti", "nbf", "aud", "x"])
_claim_values = (_json_values | st.just(ISSUER) | st.integers(0, 2**63)
                 | st.sampled_from([float("inf"), -float("inf"), 1e308, 0.5, True, False]))


async def _keyring_tokens() -> tuple[AccessTokens, KeyRing]:
    clock = FakeClock()
    ring = KeyRing(MemoryKeyStore(), Secret("9UiX7w_hAHcjVDsQklswOe0yJcVDdHNLUgGkF-FX0sc"),
                   rotation_s=86400, clock=clock)
    await ring.load()
    return AccessTokens(ring, issuer=ISSUER, ttl_s=900, clock=clock), ring


def _verify_outcome(token: str) -> str:
    async def verify() -> str:
        tokens, _ = await _keyring_tokens()
        try:
            await tokens.verify(token)
        except InvalidToken:
            return "invalid"
        return "valid"

    return anyio.run(verify)


def _sign_with_ring(header: dict[str, Any], payload: bytes) -> tuple[str, AccessTokens]:
    async def build() -> tuple[str, AccessTokens]:
        tokens, ring = await _keyring_tokens()
        key = ring.current_signing_key()
        assert key.private_key is not None
        return _jws({**header, "kid": key.kid}, payload, key.private_key.sign), tokens

    return anyio.run(build)


def _only_invalid_token(tokens: AccessTokens, token: str) -> str:
    async def verify() -> str:
        try:
            await tokens.verify(token)
        except InvalidToken:
            return "invalid"
        return "valid"

    return anyio.run(verify)


@_PROPERTY
@given(claims=st.dictionaries(_claim_names, _claim_values, max_size=8) | _json_values)
def test_signed_arbitrary_json_payloads_never_raise_anything_but_invalid_token(
        claims: Any) -> None:
    """Genuinely signed by the ring's key: only the claim checks stand in the way."""
    token, tokens = _sign_with_ring({"alg": "EdDSA", "typ": "JWT"},
                                    json.dumps(claims).encode())
    outcome = _only_invalid_token(tokens, token)
    if outcome == "valid":
        now = time.time()
        assert isinstance(claims, dict) and claims["iss"] == ISSUER
        assert all(isinstance(claims[name], str) and claims[name]
                   for name in ("sub", "sid", "jti"))
        assert type(claims["exp"]) is int and claims["exp"] > now - 10


@_PROPERTY
@given(payload=st.binary(max_size=300))
def test_signed_arbitrary_payload_bytes_are_only_ever_invalid_token(payload: bytes) -> None:
    token, tokens = _sign_with_ring({"alg": "EdDSA", "typ": "JWT"}, payload)
    assert _only_invalid_token(tokens, token) == "invalid"


@_PROPERTY
@given(header=st.dictionaries(st.sampled_from(["alg", "typ", "kid", "jwk", "crit", "x5u",
                                               "b64", "zip", "cty"]),
                              _json_values | st.sampled_from(["EdDSA", "JWT", "none",
                                                              "HS256"]), max_size=5),
       keep_kid=st.booleans())
def test_arbitrary_headers_never_raise_anything_but_invalid_token(
        header: dict[str, Any], keep_kid: bool) -> None:
    async def run() -> str:
        tokens, ring = await _keyring_tokens()
        key = ring.current_signing_key()
        assert key.private_key is not None
        genuine, _ = await tokens.issue("user", "session")
        _, body, _ = genuine.split(".")
        full = dict(header)
        if keep_kid:
            full["kid"] = key.kid
        signing_input = f"{_b64(_json(full))}.{body}"
        token = f"{signing_input}.{_b64(key.private_key.sign(signing_input.encode()))}"
        try:
            await tokens.verify(token)
        except InvalidToken:
            return "invalid"
        # Accepted: the header must be exactly what issue() writes, give or take typ.
        assert full.get("alg") == "EdDSA" and full.get("kid") == key.kid
        assert set(full) <= {"alg", "kid", "typ"} and full.get("typ", "JWT") == "JWT"
        return "valid"

    anyio.run(run)


@_PROPERTY
@given(kid=st.from_regex(r"[A-Za-z0-9_\-]{1,70}", fullmatch=True) | st.text(max_size=80))
def test_arbitrary_kids_are_only_ever_invalid_token(kid: str) -> None:
    intruder = Ed25519PrivateKey.generate()
    now = int(time.time())
    token = _jws({"alg": "EdDSA", "typ": "JWT", "kid": kid},
                 {"iss": ISSUER, "sub": "u", "sid": "s", "iat": now, "exp": now + 60,
                  "jti": "j"}, intruder.sign)
    assert _verify_outcome(token) == "invalid"


_REFRESH_LOOKALIKE = st.from_regex(
    r"(rt_|RT_|rt|r_)?[A-Za-z0-9_\-.=+/\x00\u00e9]{0,70}\.?[A-Za-z0-9_\-=+/]{38,48}\n?",
    fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(candidate=_REFRESH_LOOKALIKE | st.none() | st.integers() | st.binary(max_size=80)
       | st.lists(_REFRESH_LOOKALIKE, max_size=2) | st.dictionaries(st.text(max_size=5),
                                                                   _REFRESH_LOOKALIKE))
def test_refresh_lookalikes_are_parsed_or_invalid_token(candidate: object) -> None:
    try:
        session_id = parse_refresh_token(candidate)
    except InvalidToken:
        return
    assert isinstance(candidate, str)
    prefix, _, secret = candidate.rpartition(".")
    assert candidate.startswith("rt_") and prefix == f"rt_{session_id}"
    assert len(secret) == 43 and "\n" not in candidate
