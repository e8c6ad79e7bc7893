"""Passwords: the policy for new ones, Argon2id hashing, and the common-password list."""

from authnode.accounts.passwords.hasher import PasswordHasher
from authnode.accounts.passwords.policy import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    PasswordPolicy,
    load_common_passwords,
)

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "PasswordHasher",
    "PasswordPolicy",
    "load_common_passwords",
]
