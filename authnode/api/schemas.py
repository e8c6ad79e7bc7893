"""Request and response models: validation and the OpenAPI document come from these.

Requests are parsed strictly (a string field accepts only a JSON string, so
``{"$gt": ""}`` is refused, never interpreted); lengths are bounded here so nothing
unbounded reaches the hasher or MongoDB.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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


class LoginRequest(_Request):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)


class RefreshRequest(_Request):
    refresh_token: str = Field(max_length=1024)


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
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    user: User


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
