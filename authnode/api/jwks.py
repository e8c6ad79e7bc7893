"""``/.well-known/jwks.json``: the public keys that verify access tokens."""

from __future__ import annotations

import json

from quart import Blueprint, Response
from quart_schema import document_response

from authnode.api import schemas
from authnode.api.access import public
from authnode.tokens.keyring import KeyRing


def jwks_blueprint(keyring: KeyRing, *, max_age_s: int) -> Blueprint:
    bp = Blueprint("jwks", __name__)

    @bp.get("/.well-known/jwks.json")
    @public
    @document_response(schemas.Jwks, 200)
    async def jwks() -> Response:
        """The current and previous signing keys (a CDN may cache this)."""
        await keyring.maybe_refresh()
        body = json.dumps(keyring.jwks(), separators=(",", ":"))
        return Response(body, content_type="application/json",
                        headers={"Cache-Control": f"public, max-age={max_age_s}"})

    return bp
