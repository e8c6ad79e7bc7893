"""Unit tests for authnode.tokens.refresh: pure refresh-token primitives."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authnode.errors import InvalidToken
from authnode.settings import Secret
from authnode.tokens.refresh import (
    MAX_TOKEN_CHARS,
    hash_refresh_token,
    hashes_equal,
    new_refresh_token,
    new_rotation_nonce,
    parse_refresh_token,
    refresh_key_from_secret,
    successor_token,
)

SID = "665f1c2ab3d4e5f601234567"
KEY = refresh_key_from_secret(Secret("kOySttwdH8ZC0A-_S-GGIRU-JC5-mDtUg0M6r9GpLnU"))


def test_new_token_shape_and_entropy() -> None:
    token = new_refresh_token(SID)
    assert re.fullmatch(rf"rt_{SID}\.[A-Za-z0-9_-]{{43}}", token)
    secret = token.split(".", 1)[1]
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert len({new_refresh_token(SID) for _ in range(100)}) == 100


@pytest.mark.parametrize("session_id", ["", "a b", "x" * 65, "a.b", "a|b", "é"])
def test_new_token_rejects_bad_session_ids(session_id: str) -> None:
    with pytest.raises(ValueError):
        new_refresh_token(session_id)


def test_parse_returns_the_session_id() -> None:
    assert parse_refresh_token(new_refresh_token(SID)) == SID
    assert parse_refresh_token(new_refresh_token("a")) == "a"
    assert parse_refresh_token(new_refresh_token("Z" * 64)) == "Z" * 64


@pytest.mark.parametrize("token", [
    None, 5, b"rt_a.b", ["rt_x"], "", "rt_", "rt_.", f"rt_{SID}", f"rt_{SID}.",
    f"rt_{SID}.{'a' * 42}", f"rt_{SID}.{'a' * 44}", f"rt_{SID}.{'a' * 42}=",
    f"RT_{SID}.{'a' * 43}", f"xx_{SID}.{'a' * 43}", f"rt_{SID}.{'a' * 42}!",
    f"rt_{'s' * 65}.{'a' * 43}", f"rt_a.b.{'a' * 43}", f" rt_{SID}.{'a' * 43}",
    f"rt_{SID}.{'a' * 43}\n", f"rt_{SID}.{'a' * 42}é", "x" * 10_000,
])
def test_parse_rejects_malformed_tokens(token: object) -> None:
    with pytest.raises(InvalidToken):
        parse_refresh_token(token)


@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_parse_arbitrary_text_is_only_ever_invalid_token(text: str) -> None:
    try:
        session_id = parse_refresh_token(text)
    except InvalidToken:
        return
    assert text == f"rt_{session_id}.{text.rsplit('.', 1)[1]}"
    assert len(text) <= MAX_TOKEN_CHARS


def test_hash_is_sha256_hex_of_the_whole_token() -> None:
    token = new_refresh_token(SID)
    digest = hash_refresh_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert hash_refresh_token(new_refresh_token(SID)) != digest


def test_successor_is_deterministic_and_well_formed() -> None:
    token, nonce = new_refresh_token(SID), new_rotation_nonce()
    first = successor_token(token, nonce, KEY, SID)
    assert successor_token(token, nonce, KEY, SID) == first
    assert parse_refresh_token(first) == SID
    assert first != token
    mac = hmac.new(KEY, f"{token}|{nonce}".encode(), hashlib.sha256).digest()
    assert first == f"rt_{SID}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def test_successor_depends_on_token_nonce_and_key() -> None:
    token, nonce = new_refresh_token(SID), new_rotation_nonce()
    base = successor_token(token, nonce, KEY, SID)
    assert successor_token(new_refresh_token(SID), nonce, KEY, SID) != base
    assert successor_token(token, new_rotation_nonce(), KEY, SID) != base
    other_key = refresh_key_from_secret(Secret("b-9oZBamBeChYGBXW6B-S2lkk597hXuveVzYvu5VRoA"))
    assert successor_token(token, nonce, other_key, SID) != base


def test_successor_chain_stays_parseable() -> None:
    token = new_refresh_token(SID)
    for _ in range(5):
        token = successor_token(token, new_rotation_nonce(), KEY, SID)
        assert parse_refresh_token(token) == SID


def test_successor_rejects_mismatched_or_bad_inputs() -> None:
    token = new_refresh_token(SID)
    with pytest.raises(ValueError):
        successor_token(token, new_rotation_nonce(), KEY, "othersession")
    with pytest.raises(ValueError):
        successor_token(token, "", KEY, SID)
    with pytest.raises(ValueError):
        successor_token(token, new_rotation_nonce(), b"short", SID)
    with pytest.raises(InvalidToken):
        successor_token("garbage", new_rotation_nonce(), KEY, SID)


def test_refresh_key_is_hkdf_of_the_secret() -> None:
    key = refresh_key_from_secret(Secret("kOySttwdH8ZC0A-_S-GGIRU-JC5-mDtUg0M6r9GpLnU"))
    assert key == KEY
    assert len(key) == 32
    assert refresh_key_from_secret(Secret("9UiX7w_hAHcjVDsQklswOe0yJcVDdHNLUgGkF-FX0sc")) != key
    assert b"r" * 8 not in key


def test_nonces_are_fresh() -> None:
    nonces = {new_rotation_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(len(n) == 43 for n in nonces)


def test_hashes_equal() -> None:
    digest = hash_refresh_token(new_refresh_token(SID))
    assert hashes_equal(digest, str(digest))
    assert not hashes_equal(digest, hash_refresh_token(new_refresh_token(SID)))
    assert not hashes_equal(digest, digest[:-1])
    assert not hashes_equal(digest, "")
    assert hashes_equal("é", "é")
