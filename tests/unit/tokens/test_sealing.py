"""Secrets sealed under SECRET_KEY (TOTP seeds, webhook secrets): opened during a
rotation of it, refused when tampered with, and one purpose opens nothing of another."""

from __future__ import annotations

import pytest

from authnode.settings import Secret
from authnode.tokens.sealing import TOTP_SEEDS, WEBHOOK_SECRETS, SealedBox, SealedSecretError

CURRENT = Secret("c" * 10 + "urrent-secret-key-of-at-least-32-chars")
PREVIOUS = Secret("p" * 10 + "revious-secret-key-of-at-least-32-chars")
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_a_sealed_seed_does_not_show_the_seed_and_opens_again() -> None:
    box = _seeds([CURRENT])
    sealed = box.seal(SEED)
    assert SEED.encode() not in sealed
    assert box.open(sealed) == SEED


def test_a_seed_sealed_under_the_previous_secret_opens_during_rotation() -> None:
    sealed = _seeds([PREVIOUS]).seal(SEED)
    assert _seeds([CURRENT, PREVIOUS]).open(sealed) == SEED
    with pytest.raises(SealedSecretError):
        _seeds([CURRENT]).open(sealed)


def test_a_tampered_seal_is_refused() -> None:
    sealed = bytearray(_seeds([CURRENT]).seal(SEED))
    sealed[-5] ^= 1
    with pytest.raises(SealedSecretError):
        _seeds([CURRENT]).open(bytes(sealed))


def _seeds(secrets: list[Secret]) -> SealedBox:
    return SealedBox(secrets, purpose=TOTP_SEEDS)


def test_one_purpose_opens_nothing_of_another() -> None:
    sealed = SealedBox([CURRENT, None], purpose=WEBHOOK_SECRETS).seal("whsec_x")
    assert SealedBox([CURRENT], purpose=WEBHOOK_SECRETS).open(sealed) == "whsec_x"
    with pytest.raises(SealedSecretError):
        _seeds([CURRENT]).open(sealed)
