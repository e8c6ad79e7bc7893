"""TOTP codes: RFC 6238 vectors, the drift window, input normalization, provisioning."""

from __future__ import annotations

import base64

import pytest

from authnode.mfa import totp

# RFC 6238 appendix B, SHA-1 seed "12345678901234567890", last 6 digits of the 8 shown.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"),
               (2000000000, "279037")]


@pytest.mark.parametrize(("now_s", "code"), RFC_VECTORS)
def test_rfc_6238_vectors(now_s: int, code: str) -> None:
    assert totp.code_at(RFC_SECRET, now_s) == code
    assert totp.matching_step(RFC_SECRET, code, now_s) == now_s // 30


def test_one_step_of_drift_either_side_and_no_more() -> None:
    secret = totp.new_secret()
    now = 1_800_000_000.0
    code = totp.code_at(secret, now)
    step = totp.current_step(now)
    assert totp.matching_step(secret, code, now - 30) == step  # the code is one step ahead
    assert totp.matching_step(secret, code, now + 30) == step  # one step behind
    assert totp.matching_step(secret, code, now - 60) is None
    assert totp.matching_step(secret, code, now + 60) is None


@pytest.mark.parametrize("typed", ["{} {}", "{}-{}", " {}{} "])
def test_spaces_and_dashes_people_type_are_dropped(typed: str) -> None:
    secret = totp.new_secret()
    code = totp.code_at(secret, 1_800_000_000)
    assert totp.matching_step(secret, typed.format(code[:3], code[3:]),
                              1_800_000_000) is not None


@pytest.mark.parametrize("junk", ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", "\x00" * 6])
def test_anything_but_six_digits_never_matches(junk: str) -> None:
    assert totp.normalize_code(junk) is None
    assert totp.matching_step(totp.new_secret(), junk, 1_800_000_000) is None


def test_secrets_are_160_random_bits_in_base32() -> None:
    secrets = {totp.new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(base64.b32decode(s)) == 20 for s in secrets)


def test_provisioning_uri_and_qr_code() -> None:
    secret = totp.new_secret()
    result = totp.provisioning(secret, account="ann@example.com", issuer="Example Auth")
    assert result.otpauth_uri == (f"otpauth://totp/Example%20Auth:ann%40example.com?"
                                  f"secret={secret}&issuer=Example%20Auth")
    assert result.qr_svg.startswith("<svg") and result.qr_svg.rstrip().endswith("</svg>")
    assert "<script" not in result.qr_svg
