"""Recovery codes: shape, forgiving input, keyed hashes and secret rotation."""

from __future__ import annotations

import pytest

from authnode.mfa.recovery_codes import RecoveryCodeHasher, new_codes, normalize
from authnode.settings import Secret

CURRENT = Secret("c" * 10 + "urrent-secret-key-of-at-least-32-chars")
PREVIOUS = Secret("p" * 10 + "revious-secret-key-of-at-least-32-chars")


def test_ten_distinct_codes_of_fifty_bits() -> None:
    codes = new_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert len(code) == 11 and code[5] == "-"
        assert normalize(code) == code.replace("-", "")


def test_what_people_type_still_matches() -> None:
    hasher = RecoveryCodeHasher([CURRENT])
    stored = hasher.hash("0123a-b1c4d")
    for typed in ["0123A-B1C4D", "0123ab1c4d", " 0123a b1c4d ", "o123a-bic4d", "O123A-BLC4D"]:
        assert stored in hasher.candidates(typed), typed


@pytest.mark.parametrize("junk", ["", "0123a-b1c4", "0123a-b1c4d5", "0123u-b1c4d", "ü" * 10])
def test_what_cannot_be_a_code_matches_nothing(junk: str) -> None:
    assert RecoveryCodeHasher([CURRENT]).candidates(junk) == []
    with pytest.raises(ValueError):
        RecoveryCodeHasher([CURRENT]).hash(junk)


def test_hashes_are_keyed_by_the_secret_and_survive_its_rotation() -> None:
    before = RecoveryCodeHasher([PREVIOUS]).hash("0123a-b1c4d")
    assert before != RecoveryCodeHasher([CURRENT]).hash("0123a-b1c4d")
    rotating = RecoveryCodeHasher([CURRENT, PREVIOUS])
    assert before in rotating.candidates("0123a-b1c4d")
    assert rotating.hash("0123a-b1c4d") == RecoveryCodeHasher([CURRENT]).hash("0123a-b1c4d")
