"""Request and response models: validation and the OpenAPI document come from these.

Requests are parsed strictly (a string field accepts only a JSON string, so
``{"$gt": ""}`` is refused, never interpreted); lengths are bounded here so nothing
unbounded reaches the hasher or MongoDB.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from authnode.accounts.models import IssuedTokens


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class RegisterRequest(_Request):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    name: str | None = Field(default=None, max_length=1000)


class EmailRequest(_Request):
    email: str = Field(max_length=320)


class TokenRequest(_Request):
    token: str = Field(max_length=1024)


Transport = Literal["body", "cookie"]


class LoginRequest(_Request):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    transport: Transport = "body"  # "cookie": the refresh token in an HttpOnly cookie


class RefreshRequest(_Request):
    """Without ``refresh_token``: the cookie of a cookie-transport login (send ``{}``)."""

    refresh_token: str | None = Field(default=None, max_length=1024)


class ResetPasswordRequest(_Request):
    token: str = Field(max_length=1024)
    password: str = Field(max_length=4096)


class ChangePasswordRequest(_Request):
    current_password: str = Field(max_length=4096)
    new_password: str = Field(max_length=4096)


class UpdateProfileRequest(_Request):
    name: str | None = Field(max_length=1000)


class DeleteAccountRequest(_Request):
    password: str = Field(max_length=4096)


class User(BaseModel):
    id: str
    email: str
    name: str | None
    email_verified: bool
    created_at: str


class Tokens(BaseModel):
    """What login, refresh (and every other way in) answer: the one description of it."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_token: str | None = Field(
        default=None, description="absent with transport cookie: it is in the cookie")
    user: User

    @classmethod
    def body(cls, issued: IssuedTokens) -> dict[str, Any]:
        return cls(access_token=issued.access_token, token_type="Bearer",  # noqa: S106
                   expires_in=issued.expires_in, refresh_token=issued.refresh_token,
                   user=User(**issued.user)).model_dump()


class VerifiedUser(BaseModel):
    user: User


class Status(BaseModel):
    status: str


class Session(BaseModel):
    id: str
    created_at: str
    last_used_at: str | None
    user_agent: str
    ip: str
    current: bool


class Sessions(BaseModel):
    sessions: list[Session]


class ErrorDetail(BaseModel):
    code: str
    message: str


class Error(BaseModel):
    error: ErrorDetail


class Jwk(BaseModel):
    model_config = ConfigDict(extra="allow")
    kty: str
    kid: str


class Jwks(BaseModel):
    keys: list[Jwk]


class Online(BaseModel):
    online: int
    window_seconds: int


class Check(BaseModel):
    status: str
    error: str | None = None


class Readiness(BaseModel):
    status: str
    checks: dict[str, Check]


class Alive(BaseModel):
    status: str


# --------------------------------------------------------------------------- second factors


class MfaSummary(BaseModel):
    totp: bool
    webauthn: int
    recovery_codes_left: int


class Me(User):
    mfa: MfaSummary


class MfaRequired(Error):
    """401 from login: ``invalid_credentials``, or ``mfa_required`` with the ``mfa_token``
    to finish the login and the ``methods`` the account can finish it with."""

    mfa_token: str | None = None
    methods: list[Literal["totp", "recovery_code", "webauthn"]] | None = None


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class TotpEnrolment(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg: str


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]


class CodeRequest(_Request):
    code: str = Field(max_length=64)


class MfaTokenRequest(_Request):
    mfa_token: str = Field(max_length=1024)


class MfaCodeRequest(MfaTokenRequest):
    code: str = Field(max_length=64)
    transport: Transport = "body"


class CredentialRequest(_Request):
    credential: dict[str, Any]


class MfaCredentialRequest(MfaTokenRequest):
    credential: dict[str, Any]
    transport: Transport = "body"


class PasskeyLoginRequest(_Request):
    credential: dict[str, Any]
    transport: Transport = "body"


class PasskeyRegisterRequest(CredentialRequest):
    name: str | None = Field(default=None, max_length=1000)


class ReauthenticateRequest(_Request):
    password: str | None = Field(default=None, max_length=4096)
    code: str | None = Field(default=None, max_length=64)
    credential: dict[str, Any] | None = None


class PublicKeyOptions(BaseModel):
    """WebAuthn options for ``navigator.credentials.create``/``get`` (JSON, base64url)."""

    model_config = ConfigDict(extra="allow")
    challenge: str


class Passkey(BaseModel):
    id: str
    name: str
    created_at: str | None
    last_used_at: str | None


class Passkeys(BaseModel):
    passkeys: list[Passkey]


# --------------------------------------------------------------------------- operators


class _Query(BaseModel):
    """Query strings: every value arrives as text; extra parameters are refused."""

    model_config = ConfigDict(extra="forbid")


class UserQuery(_Query):
    email: str | None = Field(default=None, max_length=320)
    email_prefix: str | None = Field(default=None, max_length=320)
    created_after: datetime | None = None
    limit: int | None = Field(default=None, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=64)


class AdminUser(User):
    disabled: bool


class AdminUsers(BaseModel):
    users: list[AdminUser]
    next_cursor: str | None


class AdminUserDetail(AdminUser):
    mfa: MfaSummary
    live_sessions: int
    last_login_at: str | None
    identities: list[dict[str, Any]]
    second_factors_removed: bool | None = None


class RevokeSessionsRequest(_Request):
    session_id: str | None = Field(default=None, max_length=64)


class AuditQuery(_Query):
    user_id: str | None = Field(default=None, max_length=64)
    event: str | None = Field(default=None, max_length=64)
    after: datetime | None = None
    limit: int | None = Field(default=None, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=64)


class AuditEventView(BaseModel):
    id: str
    at: str
    event: str
    user_id: str | None
    actor: str
    outcome: str
    ip: str | None
    user_agent: str | None
    request_id: str | None


class AuditEvents(BaseModel):
    events: list[AuditEventView]
    next_cursor: str | None


class Activity(BaseModel):
    events: list[AuditEventView]


class WebhookRequest(_Request):
    url: str = Field(max_length=2048)
    events: list[str] = Field(min_length=1, max_length=20)
    description: str = Field(default="", max_length=500)


class WebhookEndpoint(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    created_at: str


class CreatedWebhook(WebhookEndpoint):
    secret: str


class WebhookEndpoints(BaseModel):
    webhooks: list[WebhookEndpoint]


class WebhookAttempt(BaseModel):
    at: str
    duration_ms: int
    status_code: int | None
    error: str | None


class WebhookDelivery(BaseModel):
    webhook_id: str
    event_type: str
    status: str
    created_at: str
    attempts: list[WebhookAttempt]


class WebhookDeliveries(BaseModel):
    deliveries: list[WebhookDelivery]


class OidcExchangeRequest(_Request):
    code: str = Field(max_length=256)
    code_verifier: str | None = Field(default=None, max_length=128)
    transport: Transport = "body"


class OidcLinkConfirmRequest(_Request):
    link_token: str = Field(max_length=256)
    password: str = Field(max_length=4096)
    transport: Transport = "body"


class OidcLinkTokenRequest(_Request):
    link_token: str = Field(max_length=256)


class OidcLinkEmailConfirmRequest(_Request):
    token: str = Field(max_length=1024)
    transport: Transport = "body"


class OidcLinkStartRequest(_Request):
    return_to: str | None = Field(default=None, max_length=2048)


class OidcLinkCodeRequest(_Request):
    link_code: str = Field(max_length=256)


class AuthorizationUrl(BaseModel):
    authorization_url: str


class LinkRequired(BaseModel):
    """409 ``link_required``: the provider's verified address has an account here."""

    error: dict[str, str]
    link_token: str
    provider: str
    email: str
    methods: list[str]


class Provider(BaseModel):
    name: str
    display_name: str


class Providers(BaseModel):
    providers: list[Provider]


class Identity(BaseModel):
    id: str
    provider: str
    display_name: str
    email: str | None
    created_at: str


class Identities(BaseModel):
    identities: list[Identity]
