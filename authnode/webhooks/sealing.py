"""Endpoint secrets sealed at rest, as TOTP seeds are (:mod:`authnode.mfa.sealing`): Fernet
under a key derived from ``SECRET_KEY`` with HKDF-SHA256 and a purpose of their own, so a
copy of the database alone cannot sign webhooks, and a key for one purpose opens nothing
of the other. A secret sealed under ``SECRET_KEY_PREVIOUS`` still opens during a rotation.

(A copy of the few lines of mfa/sealing.py with another purpose string, rather than a
change to it while it is being edited elsewhere; one helper taking the purpose can replace
both.)"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authnode.settings import Secret

_HKDF_INFO = b"authnode webhook secrets v1"


class SealedSecretError(RuntimeError):
    """A sealed endpoint secret that none of the configured secrets opens."""


def _fernet(secret: Secret) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=_HKDF_INFO).derive(secret.reveal().encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    def __init__(self, secrets_newest_first: Sequence[Secret | None]) -> None:
        usable = [secret for secret in secrets_newest_first if secret is not None]
        if not usable:
            raise ValueError("at least one secret is needed")
        self._fernets = [_fernet(secret) for secret in usable]

    def seal(self, webhook_secret: str) -> bytes:
        return self._fernets[0].encrypt(webhook_secret.encode("ascii"))

    def open(self, sealed: bytes) -> str:
        for fernet in self._fernets:
            try:
                return fernet.decrypt(bytes(sealed)).decode("ascii")
            except InvalidToken:
                continue
        raise SealedSecretError("the webhook secret is sealed under an unknown SECRET_KEY")
