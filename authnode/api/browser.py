"""Browsers: the refresh token in a cookie, the origin check that keeps that cookie from
being used by another site (CSRF), and the CORS allowlist.

**Cookie transport.** A login (or the completion of one: second factor, passkey) with
``"transport": "cookie"`` sets the refresh token in ``__Host-authnode_refresh`` —
``HttpOnly; Secure; SameSite=Lax; Path=/`` — and answers only the access token, so no
script on the page can read the long-lived credential. ``POST /v1/auth/refresh`` without
a body token reads the cookie, rotates it and sets the new one; logout clears it. Served
from ``http://localhost`` or ``http://127.0.0.1`` (development), where a browser refuses
``Secure`` and ``__Host-``, the cookie is ``authnode_refresh`` without ``Secure``.

**CSRF.** A request that the cookie authenticates must come from an allowed origin:
``PUBLIC_URL``'s own or one of ``CORS_ALLOWED_ORIGINS``. Its ``Origin`` header is checked;
without one (or with ``null``, which is what a browser sends for a form on a page with
``Referrer-Policy: no-referrer``, as ours are), ``Sec-Fetch-Site`` — set by the browser,
never by a page — must say ``same-origin``; without either it is refused
(403 ``csrf_failed``, naming the header). ``SameSite=Lax`` already keeps the cookie off
cross-site POSTs in current browsers; this check does not depend on it. Requests that carry
their token in the body or the ``Authorization`` header are not affected.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from quart import Quart, Request, Response, jsonify

from authnode.errors import AuthnodeError
from authnode.settings import Settings

SECURE_COOKIE = "__Host-authnode_refresh"
DEV_COOKIE = "authnode_refresh"
# The hosted pages' access token (the JSON API never reads it): HttpOnly like the refresh
# cookie, and as short-lived as the token, so a page view costs no refresh.
SECURE_ACCESS_COOKIE = "__Host-authnode_access"
DEV_ACCESS_COOKIE = "authnode_access"
CORS_MAX_AGE_S = 600
CORS_METHODS = ("GET", "POST", "PATCH", "DELETE")
CORS_HEADERS = ("Authorization", "Content-Type", "X-Request-ID")
CORS_EXPOSED = ("X-Request-ID", "Retry-After", "ETag")


class CsrfFailed(AuthnodeError):
    status = 403
    code = "csrf_failed"
    default_message = "The request did not come from an allowed origin."


def is_development(settings: Settings) -> bool:
    """``PUBLIC_URL`` is plain http on this machine: cookies cannot be Secure there."""
    parts = urlsplit(settings.public_url)
    return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1")


def cookie_name(settings: Settings) -> str:
    return DEV_COOKIE if is_development(settings) else SECURE_COOKIE


def allowed_origins(settings: Settings) -> frozenset[str]:
    return frozenset({settings.public_origin.lower(), *settings.cors_allowed_origins})


def set_refresh_cookie(response: Response, settings: Settings, refresh_token: str) -> None:
    response.set_cookie(cookie_name(settings), refresh_token,
                        max_age=settings.refresh_token_ttl_s, path="/",
                        secure=not is_development(settings), httponly=True, samesite="Lax")


def clear_refresh_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(cookie_name(settings), path="/",
                           secure=not is_development(settings), httponly=True,
                           samesite="Lax")


def access_cookie_name(settings: Settings) -> str:
    return DEV_ACCESS_COOKIE if is_development(settings) else SECURE_ACCESS_COOKIE


def set_page_cookies(response: Response, settings: Settings, body: dict[str, Any]) -> None:
    """Sign a browser in to the hosted pages: the refresh token (the same cookie as the
    cookie transport) and the access token, both HttpOnly; SameSite=Lax."""
    set_refresh_cookie(response, settings, body["refresh_token"])
    response.set_cookie(access_cookie_name(settings), body["access_token"],
                        max_age=int(body["expires_in"]), path="/",
                        secure=not is_development(settings), httponly=True, samesite="Lax")


def clear_page_cookies(response: Response, settings: Settings) -> None:
    clear_refresh_cookie(response, settings)
    response.delete_cookie(access_cookie_name(settings), path="/",
                           secure=not is_development(settings), httponly=True,
                           samesite="Lax")


def signed_in_redirect(body: dict[str, Any], settings: Settings, location: str) -> Response:
    """A 303 to ``location`` (already checked: :mod:`authnode.api.return_urls`) that signs
    the browser in to the hosted pages and to cookie-transport apps."""
    response = Response("", status=303, headers={"Location": location,
                                                 "Cache-Control": "no-store",
                                                 "Referrer-Policy": "no-referrer"})
    set_page_cookies(response, settings, body)
    return response


def page_access_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(access_cookie_name(settings)) or None


def refresh_cookie(request: Request, settings: Settings) -> str | None:
    value = request.cookies.get(cookie_name(settings))
    return value or None


def check_origin(request: Request, settings: Settings) -> None:
    """Refuse a cookie-authenticated request that another site could have made."""
    origin = request.headers.get("Origin")
    if origin == "null":
        # What a browser sends for a form on a page with ``Referrer-Policy: no-referrer``
        # (ours), and for sandboxed or privacy-sensitive contexts: Sec-Fetch-Site decides.
        origin = None
    if origin is not None:
        if origin.lower() not in allowed_origins(settings):
            raise CsrfFailed("The Origin header names an origin that is not allowed "
                             "(PUBLIC_URL or CORS_ALLOWED_ORIGINS).")
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is None:
        raise CsrfFailed("The Origin header is missing; a cookie is only accepted with it "
                         "(or with Sec-Fetch-Site: same-origin).")
    if fetch_site != "same-origin":
        raise CsrfFailed(f"Sec-Fetch-Site is {fetch_site!r}; a cookie is only accepted "
                         "from a same-origin page without an Origin header.")


def tokens_response(body: dict[str, Any], settings: Settings, *, cookie: bool) -> Response:
    """The tokens body, or (cookie transport) the refresh token moved into the cookie."""
    if not cookie:
        return jsonify(body)
    refresh_token = body.pop("refresh_token")
    response = jsonify(body)
    set_refresh_cookie(response, settings, refresh_token)
    return response


def install_cors(app: Quart, settings: Settings) -> None:
    """Answer preflights and add CORS headers for ``CORS_ALLOWED_ORIGINS`` (quart-cors);
    with none configured, no CORS header is ever sent."""
    if not settings.cors_allowed_origins:
        return
    from quart_cors import cors

    cors(app, allow_origin=list(settings.cors_allowed_origins), allow_credentials=True,
         allow_methods=list(CORS_METHODS), allow_headers=list(CORS_HEADERS),
         expose_headers=list(CORS_EXPOSED), max_age=CORS_MAX_AGE_S)
