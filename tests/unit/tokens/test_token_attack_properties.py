"""Hypothesis properties of the token parsers, against the in-memory key store.

What ``test_access.py`` and ``test_refresh.py`` do not already cover (they have arbitrary
text, arbitrary bytes and mutations of a valid token for ``AccessTokens.verify``, and
arbitrary text for ``parse_refresh_token``): structurally valid JWS whose header or payload
is *arbitrary JSON* signed with the real key (so the claim and header checks see every JSON
type, nesting, huge numbers and odd strings), well-formed tokens with arbitrary kids (the
unknown-kid path), and refresh-token look-alikes drawn close to the real shape. The attacks
on a running server are in ``tests/security/test_token_attacks.py``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authnode.errors import InvalidToken
from authnode.settings import Secret
from authnode.tokens.access import AccessTokens
from authnode.tokens.keyring import KeyRing
from authnode.tokens.refresh import parse_refresh_token
from tests.unit.tokens._fakes import FakeClock, MemoryKeyStore


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _jws(header: dict[str, Any], payload: dict[str, Any] | bytes, sign: Any) -> str:
    body = payload if isinstance(payload, bytes) else _json(payload)
    signing_input = f"{_b64(_json(header))}.{_b64(body)}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"

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
