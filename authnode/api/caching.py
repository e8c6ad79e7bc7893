"""Responses a CDN may cache: ``Cache-Control: public``, a strong ``ETag``, and 304.

Only public documents that are the same for every caller and every instance go through
here (the JWKS and the OpenAPI document). Their ETag is a hash of the body, so every
instance computes the same one for the same content, and a CDN in front of several
instances revalidates cleanly. Everything personal carries ``no-store`` instead (see
:mod:`authnode.api.app`).

``If-None-Match`` follows RFC 9110 §13.1.2: ``*`` matches any current representation, a
list matches if any member does, and the comparison is the *weak* one (``W/"x"`` matches
``"x"``), as the RFC requires for this header. A header that does not parse matches
nothing, so the client simply gets the full 200.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from quart import Request, Response

OPENAPI_MAX_AGE_S = 3600

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*')

# Headers a 304 must repeat from the 200 it stands for (RFC 9110 §15.4.5).
_KEPT_ON_304 = ("Cache-Control", "ETag", "Expires", "Vary", "Content-Location")


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _opaque(tag: str) -> str | None:
    match = _ENTITY_TAG.fullmatch(tag)
    return match.group(2) if match else None


def entity_tags(header: str) -> list[str] | None:
    """The opaque parts of an ``If-None-Match`` list, or None if the list does not parse.
    Commas may appear inside a quoted tag, so the list is scanned, not split."""
    found: list[str] = []
    position = 0
    while position < len(header):
        match = _ENTITY_TAG.match(header, position)
        if match is None:
            return None
        found.append(match.group(2))
        position = match.end()
        if position < len(header):
            if header[position] != ",":
                return None
            position += 1
            while position < len(header) and header[position] in " \t,":
                position += 1  # empty list elements are allowed (RFC 9110 §5.6.1)
    return found


def none_match(header: str | None, etag: str) -> bool:
    """True when ``If-None-Match: header`` matches ``etag`` (weak comparison): the client
    already has this representation, so a GET or HEAD gets 304."""
    if header is None or not header.strip():
        return False
    if header.strip() == "*":
        return True
    opaque = _opaque(etag)
    tags = entity_tags(header.strip())
    return opaque is not None and tags is not None and opaque in tags


class PublicCache:
    """``max_age_s`` by path for the public, cacheable documents."""

    def __init__(self, max_age_by_path: Mapping[str, int]) -> None:
        self._max_age_by_path = dict(max_age_by_path)

    async def apply(self, request: Request, response: Response) -> Response:
        max_age_s = self._max_age_by_path.get(request.path)
        if (max_age_s is None or request.method not in ("GET", "HEAD")
                or response.status_code != 200):
            return response
        etag = response.headers.get("ETag") or strong_etag(await response.get_data(as_text=False))
        response.headers["ETag"] = etag
        response.headers["Cache-Control"] = f"public, max-age={max_age_s}"
        if not none_match(request.headers.get("If-None-Match"), etag):
            return response
        not_modified = Response(b"", status=304)
        del not_modified.headers["Content-Type"]
        del not_modified.headers["Content-Length"]
        for name in _KEPT_ON_304:
            if name in response.headers:
                not_modified.headers[name] = response.headers[name]
        return not_modified
