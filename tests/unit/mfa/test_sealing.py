"""TOTP seeds sealed under SECRET_KEY, and opened during its rotation."""

from __future__ import annotations

import pytest

from authnode.mfa.sealing import SealedSecretError, SeedBox
from authnode.settings import Secret

CURRENT = Secret("c" * 10 + "urrent-secret-key-of-at-least-32-chars")
PREVIOUS = Secret("p" * 10 + "revious-secret-key-of-at-least-32-chars")
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_a_sealed_seed_does_not_show_the_seed_and_opens_again() -> None:
    box = SeedBox([CURRENT])
    sealed = box.seal(SEED)
    assert SEED.encode() not in sealed
    assert box.open(sealed) == SEED


def test_a_seed_sealed_under_the_previous_secret_opens_during_rotation() -> None:
    sealed = SeedBox([PREVIOUS]).seal(SEED)
    assert SeedBox([CURRENT, PREVIOUS]).open(sealed) == SEED
    with pytest.raises(SealedSecretError):
        SeedBox([CURRENT]).open(sealed)


def test_a_tampered_seal_is_refused() -> None:
    sealed = bytearray(SeedBox([CURRENT]).seal(SEED))
    sealed[-5] ^= 1
    with pytest.raises(SealedSecretError):
        SeedBox([CURRENT]).open(bytes(sealed))
