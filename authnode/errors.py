"""The one exception hierarchy of authnode.

Every error a request can meet is an :class:`AuthnodeError`; each class carries the HTTP
status and the stable error code it maps to, so the mapping to HTTP happens in exactly one
place (``authnode.api.errors``). Messages are safe to show to a client: they never contain
a password, a token or another user's data.
"""

from __future__ import annotations


class AuthnodeError(Exception):
    status: int = 500
    code: str = "internal_error"
    default_message: str = "Something went wrong on our side."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message

    def headers(self) -> dict[str, str]:
        return {}

    def extra(self) -> dict[str, object]:
        """Fields of the answer beside ``error`` (most errors have none)."""
        return {}


class InvalidRequest(AuthnodeError):
    status = 422
    code = "invalid_request"
    default_message = "The request is not valid."



class WeakPassword(AuthnodeError):
    status = 422
    code = "weak_password"
    default_message = "Choose a password of 8 to 128 characters that is not a common one."


class InvalidCredentials(AuthnodeError):
    status = 401
    code = "invalid_credentials"
    default_message = "The email or password is incorrect."


class InvalidToken(AuthnodeError):
    """A bearer, refresh or email-link token that is missing, malformed, expired or revoked."""

    status = 401
    code = "invalid_token"
    default_message = "The token is missing, malformed, expired or revoked."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class InvalidEmailToken(AuthnodeError):
    status = 400
    code = "invalid_token"
    default_message = "The link is unknown, expired or already used."


class EmailNotVerified(AuthnodeError):
    status = 403
    code = "email_not_verified"
    default_message = "Verify your email address before logging in."


class AccountDisabled(AuthnodeError):
    status = 403
    code = "account_disabled"
    default_message = "This account is disabled."


class NoPassword(AuthnodeError):
    """An account made by signing in with a provider has no password until it sets one
    through a reset link."""

    status = 409
    code = "no_password"
    default_message = ("This account has no password yet; set one with a reset link "
                       "(POST /v1/auth/password/forgot).")


class NotFound(AuthnodeError):
    status = 404
    code = "not_found"
    default_message = "Not found."




class MfaRequired(AuthnodeError):
    """The password was right and the account has a second factor: finish the login at
    ``/v1/auth/mfa`` with ``mfa_token`` and one of ``methods``."""

    status = 401
    code = "mfa_required"
    default_message = "A second factor is required to finish logging in."

    def __init__(self, mfa_token: str, methods: list[str]) -> None:
        super().__init__()
        self.mfa_token = mfa_token
        self.methods = methods

    def extra(self) -> dict[str, object]:
        return {"mfa_token": self.mfa_token, "methods": self.methods}


class InvalidCode(AuthnodeError):
    """A TOTP or recovery code (or a passkey's answer) that does not verify."""

    status = 400
    code = "invalid_code"
    default_message = "The code is not valid."


class ReauthenticationRequired(AuthnodeError):
    status = 403
    code = "reauthentication_required"
    default_message = ("Confirm who you are again (POST /v1/auth/reauthenticate), with your "
                       "second factor if you have one, then retry.")


class Conflict(AuthnodeError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RateLimited(AuthnodeError):
    status = 429
    code = "rate_limited"
    default_message = "Too many attempts; try again later."

    def __init__(self, retry_after_s: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class AccountLocked(RateLimited):
    """Too many failed logins for one account: the same 429 as any limit, told apart only
    for metrics (login outcome ``locked``)."""

    default_message = "Too many failed logins for this account; try again later."


class Unavailable(AuthnodeError):
    """A dependency (MongoDB, Redis, PostgreSQL) did not answer; the client may retry."""

    status = 503
    code = "unavailable"
    default_message = "The service is temporarily unavailable; try again shortly."

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(message or f"{dependency} is unavailable; try again shortly.")
        self.dependency = dependency

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}
