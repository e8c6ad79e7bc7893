"""The one form of a password that is measured, compared and hashed: Unicode NFKC
(NIST SP 800-63B, 5.1.1.2).

The policy counts length in code points *after* NFKC and the hasher hashes the NFKC form,
so the same password typed on keyboards or systems that produce a different Unicode form
of it (composed ``é`` versus ``e`` + combining accent, full-width letters, ligatures)
still verifies.
"""

from __future__ import annotations

import unicodedata


def normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def fold(text: str) -> str:
    """The form used for case-insensitive comparisons: NFKC, then case-folded."""
    return normalize(text).casefold()
