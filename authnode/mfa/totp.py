"""Time-based one-time passwords (RFC 6238, through pyotp): 6 digits, 30 s steps, SHA-1.

Those are the parameters every authenticator app implements; others are silently ignored
by some apps, which then show codes that never match.

:func:`matching_step` accepts the code of the current step or of one step either side
(clock drift of up to 30 s) and returns *which* step matched, so the caller can refuse a
second use of that step's code (replay) through a shared store.
"""

from __future__ import annotations

import hmac
import io
from dataclasses import dataclass

import pyotp
import segno

DIGITS = 6
STEP_S = 30
DRIFT_STEPS = 1  # a code of the previous or next step is accepted too
SECRET_BYTES = 20  # 160 bits, the RFC 4226 recommendation for HMAC-SHA1
_CODE_CHARS = frozenset("0123456789")


def new_secret() -> str:
    """A random base32 seed (32 characters for 160 bits)."""
    return pyotp.random_base32(length=SECRET_BYTES * 8 // 5)


@dataclass(frozen=True)
class Provisioning:
    secret: str
    otpauth_uri: str
    qr_svg: str


def provisioning(secret: str, *, account: str, issuer: str) -> Provisioning:
    """What an authenticator app needs: the ``otpauth://`` URI and a QR code of it (SVG)."""
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=account, issuer_name=issuer)
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False,
                                    svgns=True, title=f"{issuer}: {account}")
    return Provisioning(secret=secret, otpauth_uri=uri, qr_svg=buffer.getvalue().decode())


def normalize_code(raw: str) -> str | None:
    """Digits only (spaces and dashes people type are dropped); None if not a 6-digit code."""
    code = raw.replace(" ", "").replace("-", "")
    if len(code) != DIGITS or not set(code) <= _CODE_CHARS:
        return None
    return code


def current_step(now_s: float) -> int:
    return int(now_s // STEP_S)


def matching_step(secret: str, raw_code: str, now_s: float) -> int | None:
    """The time step whose code ``raw_code`` is, within the drift window; None if none.

    Every step of the window is computed and compared in constant time, so the answer's
    timing does not tell which step (if any) matched."""
    code = normalize_code(raw_code)
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    now_step = current_step(now_s)
    matched: int | None = None
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected, code or "-" * DIGITS) and code is not None:
            matched = step
    return matched


def code_at(secret: str, now_s: float) -> str:
    """The code an authenticator shows at ``now_s`` (tests and the software authenticator)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).generate_otp(current_step(now_s))
