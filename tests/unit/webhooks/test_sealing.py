"""Endpoint secrets sealed under SECRET_KEY with a purpose of their own."""

from __future__ import annotations

import pytest

from authnode.mfa.sealing import SeedBox
from authnode.settings import Secret
from authnode.webhooks import signing
from authnode.webhooks.sealing import SealedSecretError, SecretBox

CURRENT = Secret("c" * 43)
PREVIOUS = Secret("p" * 43)


def test_a_sealed_secret_opens_and_does_not_show() -> None:
    secret = signing.new_secret()
    sealed = SecretBox([CURRENT, None]).seal(secret)
    assert secret.encode() not in sealed
    assert SecretBox([CURRENT]).open(sealed) == secret


def test_a_secret_sealed_under_the_previous_key_opens_during_a_rotation() -> None:
    sealed = SecretBox([PREVIOUS]).seal("whsec_x")
    assert SecretBox([CURRENT, PREVIOUS]).open(sealed) == "whsec_x"
    with pytest.raises(SealedSecretError):
        SecretBox([CURRENT]).open(sealed)


def test_the_totp_purpose_does_not_open_webhook_secrets() -> None:
    sealed = SecretBox([CURRENT]).seal("whsec_x")
    with pytest.raises(Exception, match="unknown SECRET_KEY"):
        SeedBox([CURRENT]).open(sealed)
