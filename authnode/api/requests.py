"""Small readers of the incoming request shared by the blueprints."""

from __future__ import annotations

from quart import Request

from authnode.errors import InvalidToken

MAX_BEARER_CHARS = 4096


def bearer_token(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_BEARER_CHARS:
        raise InvalidToken()
    return token


def client_ip(request: Request, *, trust_forwarded_for: bool) -> str:
    if trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:64]
    return (request.remote_addr or "unknown")[:64]


def user_agent(request: Request) -> str:
    return request.headers.get("User-Agent", "")[:256]
