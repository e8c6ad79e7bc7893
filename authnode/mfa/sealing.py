"""TOTP seeds sealed at rest, like the signing keys: Fernet under a key derived from
``SECRET_KEY`` (HKDF-SHA256, a purpose of its own), so a copy of the database alone does
not give anyone the codes. A seed sealed under ``SECRET_KEY_PREVIOUS`` still opens during a
rotation of the secret; new seeds are sealed under the current one."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authnode.settings import Secret

_HKDF_INFO = b"authnode totp seeds v1"


class SealedSecretError(RuntimeError):
    """A sealed seed that none of the configured secrets opens."""


def _fernet(secret: Secret) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=_HKDF_INFO).derive(secret.reveal().encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


class SeedBox:
    def __init__(self, secrets_newest_first: Sequence[Secret]) -> None:
        if not secrets_newest_first:
            raise ValueError("at least one secret is needed")
        self._fernets = [_fernet(secret) for secret in secrets_newest_first]

    def seal(self, seed: str) -> bytes:
        return self._fernets[0].encrypt(seed.encode("ascii"))

    def open(self, sealed: bytes) -> str:
        for fernet in self._fernets:
            try:
                return fernet.decrypt(bytes(sealed)).decode("ascii")
            except InvalidToken:
                continue
        raise SealedSecretError("the TOTP seed is sealed under an unknown SECRET_KEY")
