"""``/v1/users/me`` and ``/v1/sessions``: the signed-in user's own account."""

from __future__ import annotations

import hashlib
import json

from quart import Blueprint, Response, g, request
from quart_schema import document_response, validate_request

from authnode.accounts import profile
from authnode.accounts.context import Accounts
from authnode.api import schemas
from authnode.api.access import USER, requires
from authnode.api.documentation import no_content
from authnode.api.requests import client_ip


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def users_blueprint(accounts: Accounts) -> Blueprint:
    bp = Blueprint("users", __name__)
    trusted_proxies = accounts.settings.trusted_proxies

    @bp.get("/v1/users/me")
    # The cached profile is read with the revocation marks: one Redis round trip, not two.
    @requires(USER, with_profile=True)
    @document_response(schemas.Me, 200)
    @no_content(304)
    @document_response(schemas.Error, 401)
    async def me() -> Response:
        """The signed-in user. Sends an ETag; ``If-None-Match`` gives 304."""
        body = json.dumps(await profile.me(accounts, g.principal),
                          separators=(",", ":")).encode()
        etag = _etag(body)
        if etag in request.headers.get("If-None-Match", ""):
            return Response("", status=304, headers={"ETag": etag})
        return Response(body, status=200, content_type="application/json",
                        headers={"ETag": etag})

    @bp.patch("/v1/users/me")
    @requires(USER)
    @validate_request(schemas.UpdateProfileRequest)
    @document_response(schemas.User, 200)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 422)
    async def update_me(data: schemas.UpdateProfileRequest) -> dict[str, object]:
        """Change the display name (null clears it)."""
        return await profile.rename(accounts, g.principal, data.name)

    @bp.delete("/v1/users/me")
    @requires(USER, step_up=True)
    @validate_request(schemas.DeleteAccountRequest)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 429)
    @no_content()
    async def delete_me(data: schemas.DeleteAccountRequest) -> Response:
        """Delete the account, its sessions and tokens. Needs the password; a wrong one
        counts against the account's lockout as a failed login does (429 when locked)."""
        await profile.delete_account(accounts, g.principal, password=data.password,
                                     ip=client_ip(request, trusted_proxies=trusted_proxies))
        return Response("", status=204)

    @bp.get("/v1/sessions")
    @requires(USER)
    @document_response(schemas.Sessions, 200)
    @document_response(schemas.Error, 401)
    async def sessions() -> dict[str, object]:
        """The user's live sessions; ``current`` marks the one making this request."""
        return {"sessions": await profile.list_sessions(accounts, g.principal)}

    @bp.delete("/v1/sessions/<session_id>")
    @requires(USER)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 404)
    @no_content()
    async def delete_session(session_id: str) -> Response:
        """End one of the user's sessions (404 for any other id)."""
        await profile.delete_session(accounts, g.principal, session_id[:128])
        return Response("", status=204)

    return bp
