"""Unit tests for authnode.tokens.signing_keys: generation, sealing, JWK, documents, MACs."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authnode.settings import Secret
from authnode.tokens.signing_keys import (
    KID_PATTERN,
    SigningKeyError,
    UnauthenticKey,
    from_document,
    generate_signing_key,
    open_private_key,
    public_jwk,
    restamp,
    seal_private_key,
    to_document,
)

SECRET = Secret("9UiX7w_hAHcjVDsQklswOe0yJcVDdHNLUgGkF-FX0sc")
OTHER_SECRET = Secret("omG_wjg4xL8wr4NwU1r5LR3pdf0b6MGk6yLKsxDP9_U")
NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_generate_gives_short_url_safe_distinct_kids() -> None:
    kids = {generate_signing_key(NOW).kid for _ in range(50)}
    assert len(kids) == 50
    for kid in kids:
        assert KID_PATTERN.fullmatch(kid)
        assert len(kid) <= 20


def test_generate_keeps_utc_millisecond_created_at() -> None:
    key = generate_signing_key(NOW.astimezone(timezone(timedelta(hours=5))), generation=3)
    assert key.created_at == datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert key.created_at.utcoffset() == timedelta(0)
    assert key.generation == 3
    assert key.private_key is not None
    assert _raw_public(key.private_key.public_key()) == _raw_public(key.public_key)


def test_generate_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError):
        generate_signing_key(datetime(2025, 1, 1))


def test_repr_never_shows_key_material() -> None:
    key = generate_signing_key(NOW)
    assert "private=yes" in repr(key)
    assert "Ed25519" not in repr(key)


def test_seal_and_open_round_trip() -> None:
    key = generate_signing_key(NOW)
    sealed = seal_private_key(key, SECRET)
    raw = key.private_key.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    assert raw not in sealed
    opened = open_private_key(sealed, SECRET)
    assert _raw_public(opened.public_key()) == _raw_public(key.public_key)


def test_open_with_wrong_secret_raises_clear_error() -> None:
    sealed = seal_private_key(generate_signing_key(NOW), SECRET)
    with pytest.raises(SigningKeyError, match="SECRET_KEY"):
        open_private_key(sealed, OTHER_SECRET)


def test_open_garbage_raises_signing_key_error() -> None:
    with pytest.raises(SigningKeyError):
        open_private_key(b"not a fernet token", SECRET)


def test_seal_verify_only_key_is_refused() -> None:
    key = generate_signing_key(NOW)
    doc = to_document(key, SECRET)
    public_only = from_document(doc, [SECRET])
    with pytest.raises(ValueError):
        seal_private_key(public_only, SECRET)


def test_public_jwk_shape() -> None:
    key = generate_signing_key(NOW)
    jwk = public_jwk(key)
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"], jwk["kid"]) == (
        "OKP", "Ed25519", "EdDSA", "sig", key.kid)
    assert "=" not in jwk["x"]
    assert base64.urlsafe_b64decode(jwk["x"] + "=") == _raw_public(key.public_key)
    assert "d" not in jwk


def test_document_round_trip() -> None:
    key = generate_signing_key(NOW, generation=7)
    doc = to_document(key, SECRET)
    assert doc["_id"] == key.kid
    assert doc["alg"] == "EdDSA"
    assert doc["generation"] == 7
    assert isinstance(doc["sealed_private_key"], bytes)
    assert doc["public_jwk"] == public_jwk(key)
    assert doc["created_at"] == key.created_at
    assert isinstance(doc["mac"], bytes) and len(doc["mac"]) == 32
    back = from_document(doc, [SECRET], private=True)
    assert (back.kid, back.created_at, back.generation) == (
        key.kid, key.created_at, key.generation)
    assert back.private_key is not None
    assert _raw_public(back.public_key) == _raw_public(key.public_key)


def test_document_without_private_is_verify_only() -> None:
    key = generate_signing_key(NOW)
    back = from_document(to_document(key, SECRET), [SECRET])
    assert back.private_key is None
    assert _raw_public(back.public_key) == _raw_public(key.public_key)


def test_document_naive_created_at_is_taken_as_utc() -> None:
    doc = to_document(generate_signing_key(NOW), SECRET)
    doc["created_at"] = doc["created_at"].replace(tzinfo=None)
    assert from_document(doc, [SECRET]).created_at == doc["created_at"].replace(tzinfo=UTC)


def test_document_with_wrong_secret_is_unauthentic_and_names_the_kid() -> None:
    key = generate_signing_key(NOW)
    with pytest.raises(UnauthenticKey, match=key.kid):
        from_document(to_document(key, SECRET), [OTHER_SECRET])


def test_document_with_swapped_private_key_is_refused() -> None:
    first, second = generate_signing_key(NOW), generate_signing_key(NOW)
    doc = to_document(first, SECRET)
    doc["sealed_private_key"] = seal_private_key(second, SECRET)
    with pytest.raises(SigningKeyError, match="differ"):
        from_document(doc, [SECRET], private=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("_id", None), ("_id", "has space"), ("_id", 5), ("alg", "RS256"),
        ("generation", "1"), ("generation", True), ("created_at", "2025-01-01"),
        ("public_jwk", {"kty": "RSA"}), ("public_jwk", "x"),
        ("public_jwk", {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        ("public_jwk", {"kty": "OKP", "crv": "Ed25519", "x": 5}),
        ("sealed_private_key", "text"), ("sealed_private_key", None),
    ],
)
def test_malformed_documents_raise_signing_key_error(field: str, value: object) -> None:
    doc = to_document(generate_signing_key(NOW), SECRET)
    doc[field] = value
    with pytest.raises(SigningKeyError):
        from_document(doc, [SECRET], private=True)


# --------------------------------------------------------------------------- MACs


def _planted(generation: int = 5) -> dict[str, object]:
    """What someone who can write to MongoDB but lacks SECRET_KEY can store: their own
    key pair, with whatever they like where the seal and the MAC go."""
    doc = to_document(generate_signing_key(NOW, generation=generation), OTHER_SECRET)
    doc["mac"] = b"\x00" * 32
    return doc


@pytest.mark.parametrize("mac", [None, b"", b"\x00" * 32, "text", "absent"])
def test_a_document_without_a_valid_mac_is_refused(mac: object) -> None:
    doc = to_document(generate_signing_key(NOW), SECRET)
    if mac == "absent":
        del doc["mac"]
    else:
        doc["mac"] = mac
    with pytest.raises(UnauthenticKey, match="MAC"):
        from_document(doc, [SECRET])


@pytest.mark.parametrize(("field", "value"), [
    ("generation", 99), ("created_at", NOW + timedelta(days=1)),
    ("public_jwk", public_jwk(generate_signing_key(NOW))),
])
def test_the_mac_covers_generation_creation_time_and_public_key(field: str,
                                                                 value: object) -> None:
    doc = to_document(generate_signing_key(NOW), SECRET)
    doc[field] = value
    if field == "public_jwk":
        doc["public_jwk"] = {**doc["public_jwk"], "kid": doc["_id"]}
    with pytest.raises(UnauthenticKey):
        from_document(doc, [SECRET])


def test_the_mac_covers_the_kid() -> None:
    doc = to_document(generate_signing_key(NOW), SECRET)
    doc["_id"] = "renamedKid"
    with pytest.raises(UnauthenticKey):
        from_document(doc, [SECRET])


def test_a_planted_key_is_refused_even_public_only() -> None:
    with pytest.raises(UnauthenticKey):
        from_document(_planted(), [SECRET])


def test_a_key_under_the_previous_secret_is_accepted_and_opened_with_it() -> None:
    key = generate_signing_key(NOW)
    doc = to_document(key, OTHER_SECRET)
    back = from_document(doc, [SECRET, OTHER_SECRET], private=True)
    assert back.private_key is not None
    assert _raw_public(back.public_key) == _raw_public(key.public_key)
    with pytest.raises(UnauthenticKey, match="SECRET_KEY_PREVIOUS"):
        from_document(doc, [SECRET, Secret("u" * 40)])


def test_retired_at_is_read() -> None:
    doc = to_document(generate_signing_key(NOW), SECRET)
    assert from_document(doc, [SECRET]).retired_at is None
    doc["retired_at"] = NOW + timedelta(hours=1)
    del doc["sealed_private_key"]
    assert from_document(doc, [SECRET]).retired_at == datetime(2025, 3, 1, 13, 0, 0, 123000,
                                                               tzinfo=UTC)
    doc["retired_at"] = "yesterday"
    with pytest.raises(SigningKeyError):
        from_document(doc, [SECRET])


# --------------------------------------------------------------------------- restamp


def test_restamp_leaves_a_current_document_alone() -> None:
    assert restamp(to_document(generate_signing_key(NOW), SECRET), [SECRET]) is None


def test_restamp_macs_a_document_written_before_macs_existed() -> None:
    key = generate_signing_key(NOW)
    doc = to_document(key, SECRET)
    del doc["mac"]
    with pytest.raises(UnauthenticKey):
        from_document(doc, [SECRET])
    fields = restamp(doc, [SECRET])
    assert fields is not None and set(fields) == {"mac", "sealed_private_key"}
    back = from_document({**doc, **fields}, [SECRET], private=True)
    assert _raw_public(back.public_key) == _raw_public(key.public_key)


def test_restamp_moves_a_document_to_the_new_secret() -> None:
    key = generate_signing_key(NOW)
    doc = to_document(key, OTHER_SECRET)
    fields = restamp(doc, [SECRET, OTHER_SECRET])
    assert fields is not None
    moved = {**doc, **fields}
    assert from_document(moved, [SECRET], private=True).private_key is not None
    with pytest.raises(SigningKeyError):
        open_private_key(moved["sealed_private_key"], OTHER_SECRET)
    assert restamp(moved, [SECRET, OTHER_SECRET]) is None


def test_restamp_moves_a_retired_document_without_a_private_half() -> None:
    doc = to_document(generate_signing_key(NOW), OTHER_SECRET)
    del doc["sealed_private_key"]
    doc["retired_at"] = NOW
    fields = restamp(doc, [SECRET, OTHER_SECRET])
    assert fields is not None and set(fields) == {"mac"}
    assert from_document({**doc, **fields}, [SECRET]).retired_at is not None


@pytest.mark.parametrize("strip_mac", [False, True])
def test_restamp_refuses_a_planted_document(strip_mac: bool) -> None:
    doc = _planted()
    if strip_mac:
        del doc["mac"]  # no MAC and a seal that does not open under our secrets
    with pytest.raises(UnauthenticKey):
        restamp(doc, [SECRET])

