"""Unit tests for authnode.tokens.access: issuing and (above all) rejecting access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authnode.errors import InvalidToken
from authnode.settings import Secret
from authnode.tokens.access import LEEWAY_S, MAX_TOKEN_CHARS, AccessClaims, AccessTokens
from authnode.tokens.keyring import KeyRing
from authnode.tokens.signing_keys import public_jwk

from ._fakes import FakeClock, MemoryKeyStore

ISSUER = "https://auth.example.test"
TTL_S = 900
SECRET = Secret("7pnL0c4LH7tyG3yKLJIlp5s-6eOGgc3_99vK9VkKb2c")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Env:
    tokens: AccessTokens
    ring: KeyRing
    store: MemoryKeyStore
    clock: FakeClock


async def _env() -> Env:
    store, clock = MemoryKeyStore(), FakeClock()
    ring = KeyRing(store, SECRET, rotation_s=86400, clock=clock)
    await ring.load()
    return Env(AccessTokens(ring, issuer=ISSUER, ttl_s=TTL_S, clock=clock), ring, store, clock)


@pytest.fixture
async def env() -> Env:
    return await _env()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _forge(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes,
           sign: Callable[[bytes], bytes]) -> str:
    head = header if isinstance(header, bytes) else _json(header)
    body = payload if isinstance(payload, bytes) else _json(payload)
    signing_input = f"{_b64(head)}.{_b64(body)}".encode()
    return f"{signing_input.decode()}.{_b64(sign(signing_input))}"


def _claims(env: Env, **overrides: Any) -> dict[str, Any]:
    now = int(env.clock())
    claims: dict[str, Any] = {"iss": ISSUER, "sub": "user1", "sid": "sess1", "iat": now,
                              "exp": now + TTL_S, "jti": "j1"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not _DROP}


_DROP = object()


def _ring_signer(env: Env) -> Callable[[bytes], bytes]:
    private_key = env.ring.current_signing_key().private_key
    assert private_key is not None
    return private_key.sign


def _header(env: Env, **overrides: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": "EdDSA", "kid": env.ring.current_signing_key().kid,
                              "typ": "JWT"}
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not _DROP}


async def _rejected(env: Env, token: object) -> None:
    with pytest.raises(InvalidToken):
        await env.tokens.verify(token)


# ----------------------------------------------------------------------------- happy path


@pytest.mark.anyio
async def test_issue_and_verify_round_trip(env: Env) -> None:
    token, expires_in = await env.tokens.issue("user-42", "session-7")
    assert expires_in == TTL_S
    claims = await env.tokens.verify(token)
    now = int(env.clock())
    assert isinstance(claims, AccessClaims)
    assert (claims.sub, claims.sid, claims.iat, claims.exp) == (
        "user-42", "session-7", now, now + TTL_S)
    assert len(claims.jti) >= 16


@pytest.mark.anyio
async def test_issued_header_and_claims(env: Env) -> None:
    token, _ = await env.tokens.issue("u", "s")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": env.ring.current_signing_key().kid, "typ": "JWT"}
    payload = json.loads(_unb64(token.split(".")[1]))
    assert set(payload) == {"iss", "sub", "sid", "iat", "exp", "jti"}
    assert payload["iss"] == ISSUER


@pytest.mark.anyio
async def test_issued_tokens_verify_with_the_published_jwks(env: Env) -> None:
    """A relying party that only has our JWKS can verify with stock PyJWT."""
    token, _ = await env.tokens.issue("u", "s")
    jwk = jwt.PyJWK(env.ring.jwks()["keys"][0])
    claims = jwt.decode(token, key=jwk, algorithms=["EdDSA"], issuer=ISSUER)
    assert claims["sub"] == "u"


@pytest.mark.anyio
async def test_jtis_are_unique(env: Env) -> None:
    jtis = {(await env.tokens.verify((await env.tokens.issue("u", "s"))[0])).jti
            for _ in range(20)}
    assert len(jtis) == 20


@pytest.mark.anyio
@pytest.mark.parametrize(("user_id", "session_id"), [("", "s"), ("u", ""), ("u" * 257, "s")])
async def test_issue_rejects_bad_ids(env: Env, user_id: str, session_id: str) -> None:
    with pytest.raises(ValueError):
        await env.tokens.issue(user_id, session_id)


@pytest.mark.anyio
async def test_verify_known_kid_does_not_read_the_store(env: Env) -> None:
    token, _ = await env.tokens.issue("u", "s")
    reads = env.store.newest_calls
    for _ in range(20):
        await env.tokens.verify(token)
    assert env.store.newest_calls == reads


# ----------------------------------------------------------------------------- time


@pytest.mark.anyio
async def test_expired_token_is_rejected_after_the_leeway(env: Env) -> None:
    token, _ = await env.tokens.issue("u", "s")
    env.clock.advance(TTL_S + LEEWAY_S - 1)
    await env.tokens.verify(token)
    env.clock.advance(1)
    await _rejected(env, token)


@pytest.mark.anyio
async def test_token_from_the_future_is_rejected(env: Env) -> None:
    token, _ = await env.tokens.issue("u", "s")
    env.clock.advance(-LEEWAY_S)
    await env.tokens.verify(token)
    env.clock.advance(-1)
    await _rejected(env, token)


@pytest.mark.anyio
async def test_exp_not_after_iat_is_rejected(env: Env) -> None:
    now = int(env.clock())
    await _rejected(env, _forge(_header(env), _claims(env, iat=now, exp=now), _ring_signer(env)))


# ----------------------------------------------------------------------------- keys


@pytest.mark.anyio
async def test_tokens_survive_one_rotation_but_not_two(env: Env) -> None:
    token, _ = await env.tokens.issue("u", "s")
    await env.ring.rotate()
    await env.tokens.verify(token)
    newer, _ = await env.tokens.issue("u", "s")
    assert jwt.get_unverified_header(newer)["kid"] == env.ring.current_signing_key().kid
    await env.ring.rotate()
    await _rejected(env, token)
    await env.tokens.verify(newer)


@pytest.mark.anyio
async def test_issue_picks_up_rotation_by_another_instance(env: Env) -> None:
    other = KeyRing(env.store, SECRET, rotation_s=86400, clock=env.clock)
    await other.load()
    rotated = await other.rotate()
    env.clock.advance(30)
    token, _ = await env.tokens.issue("u", "s")
    assert jwt.get_unverified_header(token)["kid"] == rotated.kid


@pytest.mark.anyio
async def test_unknown_kid_is_rejected(env: Env) -> None:
    signer = _ring_signer(env)
    await _rejected(env, _forge(_header(env, kid="unknownKid"), _claims(env), signer))


@pytest.mark.anyio
async def test_token_signed_by_a_fresh_key_is_rejected(env: Env) -> None:
    stranger = Ed25519PrivateKey.generate()
    # With our kid (key substitution) and with a kid of its own.
    await _rejected(env, _forge(_header(env), _claims(env), stranger.sign))
    await _rejected(env, _forge(_header(env, kid="strangerKid"), _claims(env), stranger.sign))


@pytest.mark.anyio
async def test_token_signed_by_another_ring_is_rejected(env: Env) -> None:
    other = await _env()
    token, _ = await other.tokens.issue("u", "s")
    await _rejected(env, token)


# ----------------------------------------------------------------------------- algorithms


def _hs256(key: bytes) -> Callable[[bytes], bytes]:
    return lambda message: hmac.new(key, message, hashlib.sha256).digest()


def _public_forms(env: Env) -> list[bytes]:
    public_key = env.ring.current_signing_key().public_key
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public_key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    x = public_jwk(env.ring.current_signing_key())["x"].encode()
    return [raw, pem, x, json.dumps(public_jwk(env.ring.current_signing_key())).encode()]


@pytest.mark.anyio
@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
async def test_hs256_signed_with_the_public_key_is_rejected(env: Env, alg: str) -> None:
    for form in _public_forms(env):
        await _rejected(env, _forge(_header(env, alg=alg), _claims(env), _hs256(form)))


@pytest.mark.anyio
async def test_alg_none_is_rejected(env: Env) -> None:
    for alg in ("none", "None", "NONE", "nOnE"):
        unsigned = _forge(_header(env, alg=alg), _claims(env), lambda _: b"")
        await _rejected(env, unsigned)
        await _rejected(env, unsigned + "AAAA")
    no_alg = _forge(_header(env, alg=_DROP), _claims(env), _ring_signer(env))
    await _rejected(env, no_alg)


@pytest.mark.anyio
async def test_rsa_and_ecdsa_tokens_are_rejected(env: Env) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    await _rejected(env, _forge(_header(env, alg="RS256"), _claims(env),
                                lambda m: rsa_key.sign(m, padding.PKCS1v15(), hashes.SHA256())))
    await _rejected(env, _forge(_header(env, alg="ES256"), _claims(env),
                                lambda m: ec_key.sign(m, ec.ECDSA(hashes.SHA256()))))


@pytest.mark.anyio
@pytest.mark.parametrize("alg", ["eddsa", "EdDSA ", "Ed25519", "ED25519", "EdDSA\u0000", "",
                                 None, 1, ["EdDSA"]])
async def test_alg_must_be_exactly_eddsa(env: Env, alg: object) -> None:
    await _rejected(env, _forge(_header(env, alg=alg), _claims(env), _ring_signer(env)))


@pytest.mark.anyio
@pytest.mark.parametrize("extra", [
    {"crit": ["b64"], "b64": False}, {"jku": "https://evil.example/jwks"},
    {"jwk": {"kty": "OKP"}}, {"x5u": "https://evil.example"}, {"typ": "at+jwt"},
    {"kid": 5}, {"kid": _DROP}, {"kid": "a b"}, {"kid": "../../etc/passwd"},
])
async def test_unexpected_headers_are_rejected_even_when_signed(
        env: Env, extra: dict[str, Any]) -> None:
    await _rejected(env, _forge(_header(env, **extra), _claims(env), _ring_signer(env)))


@pytest.mark.anyio
@pytest.mark.parametrize("header", [b"[]", b'"EdDSA"', b"null", b"{", b"\xff\xfe", b""])
async def test_non_object_headers_are_rejected(env: Env, header: bytes) -> None:
    await _rejected(env, _forge(header, _claims(env), _ring_signer(env)))


# ----------------------------------------------------------------------------- claims


@pytest.mark.anyio
@pytest.mark.parametrize("overrides", [
    {"iss": "https://evil.example"}, {"iss": ISSUER + "/"}, {"iss": _DROP}, {"iss": None},
    {"sub": _DROP}, {"sub": 42}, {"sub": ""}, {"sub": "u" * 257}, {"sid": _DROP},
    {"sid": ["s"]}, {"jti": _DROP}, {"jti": ""}, {"iat": _DROP}, {"exp": _DROP},
    {"exp": "9999999999"}, {"exp": 9.9e9}, {"exp": True}, {"iat": 1.5}, {"iat": False},
    {"exp": None}, {"iat": 2**70, "exp": 2**70 + 1}, {"exp": -(2**70)},
])
async def test_bad_claims_are_rejected_even_when_signed(
        env: Env, overrides: dict[str, Any]) -> None:
    await _rejected(env, _forge(_header(env), _claims(env, **overrides), _ring_signer(env)))


@pytest.mark.anyio
@pytest.mark.parametrize("payload", [b"[]", b"null", b"{", b"\xff", b'"x"', b"1e999",
                                     b"[" * 3000 + b"]" * 3000])
async def test_non_object_payloads_are_rejected_even_when_signed(
        env: Env, payload: bytes) -> None:
    await _rejected(env, _forge(_header(env), payload, _ring_signer(env)))


@pytest.mark.anyio
async def test_wrong_issuer_verifier_rejects(env: Env) -> None:
    token, _ = await env.tokens.issue("u", "s")
    other = AccessTokens(env.ring, issuer="https://other.example", ttl_s=TTL_S, clock=env.clock)
    with pytest.raises(InvalidToken):
        await other.verify(token)


# ----------------------------------------------------------------------------- tampering


def _flip_byte(segment: str, index: int) -> str:
    data = bytearray(_unb64(segment))
    data[index % len(data)] ^= 0x01
    return _b64(bytes(data))


@pytest.mark.anyio
@pytest.mark.parametrize("part", [0, 1, 2])
@pytest.mark.parametrize("index", [0, 7, -1])
async def test_one_flipped_byte_is_rejected(env: Env, part: int, index: int) -> None:
    token, _ = await env.tokens.issue("u", "s")
    parts = token.split(".")
    parts[part] = _flip_byte(parts[part], index)
    await _rejected(env, ".".join(parts))


@pytest.mark.anyio
async def test_non_canonical_base64_is_rejected(env: Env) -> None:
    token, _ = await env.tokens.issue("u", "s")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for part in range(3):
        parts = token.split(".")
        last = parts[part][-1]
        for replacement in alphabet:
            if replacement == last:
                continue
            parts[part] = parts[part][:-1] + replacement
            mutated = ".".join(parts)
            try:
                await env.tokens.verify(mutated)
            except InvalidToken:
                continue
            pytest.fail(f"a different spelling of part {part} verified")


@pytest.mark.anyio
async def test_padded_segments_are_rejected(env: Env) -> None:
    token, _ = await env.tokens.issue("u", "s")
    parts = token.split(".")
    for part in range(3):
        padded = list(parts)
        padded[part] += "=" * (-len(padded[part]) % 4 or 4)
        await _rejected(env, ".".join(padded))


@pytest.mark.anyio
async def test_swapped_or_duplicated_segments_are_rejected(env: Env) -> None:
    token, _ = await env.tokens.issue("u", "s")
    other, _ = await env.tokens.issue("v", "t")
    h, p, s = token.split(".")
    _, p2, s2 = other.split(".")
    for candidate in (f"{h}.{p2}.{s}", f"{h}.{p}.{s2}", f"{p}.{h}.{s}", f"{h}.{p}",
                      f"{h}.{p}.{s}.{s}", f"{h}..{s}", f".{p}.{s}", f"{h}.{p}.{s}.",
                      f" {token}", f"{token} ", f"{token}\n", f"Bearer {token}"):
        await _rejected(env, candidate)


# ----------------------------------------------------------------------------- garbage


@pytest.mark.anyio
@pytest.mark.parametrize("garbage", [
    None, 0, 1.5, b"a.b.c", ["a.b.c"], {"token": "x"}, "", ".", "..", "a.b.c", "a.b",
    "null", "\x00", "é.é.é", "eyJ.eyJ.eyJ", "A" * (MAX_TOKEN_CHARS + 1),
    "a" * 5000 + ".b.c", "\ud800.\udfff.x", "=.=.=", "a.b.c.d.e",
])
async def test_garbage_is_invalid_token(env: Env, garbage: object) -> None:
    await _rejected(env, garbage)


@pytest.mark.anyio
async def test_oversized_but_well_formed_token_is_rejected(env: Env) -> None:
    claims = _claims(env, pad="x" * MAX_TOKEN_CHARS)
    await _rejected(env, _forge(_header(env), claims, _ring_signer(env)))


# ----------------------------------------------------------------------------- properties

_PROPERTY = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


async def _only_invalid_token(tokens: AccessTokens, candidate: object) -> None:
    try:
        await tokens.verify(candidate)
    except InvalidToken:
        return
    pytest.fail("arbitrary input verified")


@pytest.mark.anyio
@_PROPERTY
@given(text=st.text(max_size=600) | st.from_regex(r"[A-Za-z0-9_\-.=]{0,400}", fullmatch=True))
async def test_arbitrary_text_is_only_ever_invalid_token(text: str) -> None:
    await _only_invalid_token((await _env()).tokens, text)


@pytest.mark.anyio
@_PROPERTY
@given(data=st.binary(max_size=600),
       decoding=st.sampled_from([("latin-1", "strict"), ("utf-8", "replace"),
                                 ("utf-8", "surrogateescape"), ("ascii", "surrogateescape"),
                                 ("utf-16-le", "replace")]))
async def test_arbitrary_bytes_are_only_ever_invalid_token(
        data: bytes, decoding: tuple[str, str]) -> None:
    await _only_invalid_token((await _env()).tokens, data.decode(*decoding))


# Mostly characters a token may contain, so mutations get past the shape check to the
# base64, JSON and signature checks; sometimes anything at all.
_token_char = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=") | st.characters()
_mutation = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 10_000), _token_char),
    st.tuples(st.just("insert"), st.integers(0, 10_000), _token_char),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.just("")),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just("")),
    st.tuples(st.just("flipbit"), st.integers(0, 10_000), st.integers(0, 7).map(str)),
)


def _mutate(token: str, mutations: list[tuple[str, int, str]]) -> str:
    for op, position, value in mutations:
        if not token:
            token = value if op in ("replace", "insert") else token
            continue
        index = position % len(token)
        if op == "replace":
            token = token[:index] + value + token[index + 1:]
        elif op == "insert":
            token = token[:index] + value + token[index:]
        elif op == "delete":
            token = token[:index] + token[index + 1:]
        elif op == "truncate":
            token = token[:index]
        else:
            flipped = chr(ord(token[index]) ^ (1 << int(value)))
            token = token[:index] + flipped + token[index + 1:]
    return token


@pytest.mark.anyio
@_PROPERTY
@given(mutations=st.lists(_mutation, min_size=1, max_size=4))
async def test_mutated_tokens_fail_or_are_the_original(
        mutations: list[tuple[str, int, str]]) -> None:
    env = await _env()
    token, _ = await env.tokens.issue("user", "session")
    original = await env.tokens.verify(token)
    mutated = _mutate(token, mutations)
    try:
        claims = await env.tokens.verify(mutated)
    except InvalidToken:
        return
    assert mutated == token
    assert claims == original
