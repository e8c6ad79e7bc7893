"""Secrets kept at rest sealed under ``SECRET_KEY``: Fernet under a key derived with
HKDF-SHA256 and a *purpose* of each kind's own (TOTP seeds, webhook secrets), so a copy of
the database alone opens nothing, and a key derived for one purpose opens nothing of
another. A value sealed under ``SECRET_KEY_PREVIOUS`` still opens during a rotation of the
secret; new values are sealed under the current one. (Signing keys use the same scheme in
:mod:`authnode.tokens.signing_keys`, with a MAC besides.)"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authnode.settings import Secret

TOTP_SEEDS = b"authnode totp seeds v1"
WEBHOOK_SECRETS = b"authnode webhook secrets v1"


class SealedSecretError(RuntimeError):
    """A sealed value that none of the configured secrets opens."""


def _fernet(secret: Secret, purpose: bytes) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=purpose).derive(secret.reveal().encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


class SealedBox:
    def __init__(self, secrets_newest_first: Sequence[Secret | None], *,
                 purpose: bytes) -> None:
        usable = [secret for secret in secrets_newest_first if secret is not None]
        if not usable:
            raise ValueError("at least one secret is needed")
        self._fernets = [_fernet(secret, purpose) for secret in usable]

    def seal(self, value: str) -> bytes:
        return self._fernets[0].encrypt(value.encode("ascii"))

    def open(self, sealed: bytes) -> str:
        for fernet in self._fernets:
            try:
                return fernet.decrypt(bytes(sealed)).decode("ascii")
            except InvalidToken:
                continue
        raise SealedSecretError("sealed under a SECRET_KEY that is no longer configured")
