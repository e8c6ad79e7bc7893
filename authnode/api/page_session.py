"""Who is signed in to the hosted pages: the cookies of a browser session.

The session is the refresh cookie (the same one as the JSON API's cookie transport); the
short-lived access cookie only saves a refresh per page view. A page view with a valid,
unrevoked access cookie costs what an API call costs (signature and the Redis revocation
check); without one, the refresh cookie is rotated — through the same
:func:`authentication.refresh` as ``POST /v1/auth/refresh``, so reuse detection and its
grace for concurrent tabs hold here too — and both cookies are renewed on the answer.
Neither cookie working means "not signed in": the page redirects to ``/login``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from quart import Request, Response

from authnode.accounts import authentication
from authnode.accounts.context import Accounts
from authnode.accounts.models import Principal
from authnode.api import browser, schemas
from authnode.api.page_render import redirect
from authnode.errors import InvalidToken


@dataclass(frozen=True)
class PageSession:
    principal: Principal
    renewed: dict[str, Any] | None  # new tokens to set as cookies on this answer


async def open_session(accounts: Accounts, request: Request, *, ip: str
                       ) -> PageSession | None:
    """The signed-in browser's session, or None."""
    settings = accounts.settings
    access = browser.page_access_cookie(request, settings)
    if access is not None:
        try:
            return PageSession(await authentication.authenticate(accounts, access), None)
        except InvalidToken:
            pass  # expired or ended: the refresh cookie decides
    refresh = browser.refresh_cookie(request, settings)
    if refresh is None:
        return None
    try:
        issued = await authentication.refresh(accounts, refresh_token=refresh, ip=ip)
    except InvalidToken:
        return None
    body = schemas.Tokens.body(issued)
    principal = await authentication.authenticate(accounts, body["access_token"])
    return PageSession(principal, body)


def sign_in_redirect(request: Request, accounts: Accounts) -> Response:
    """To ``/login``, coming back to this page (a GET) or to ``/account`` after it; stale
    cookies are cleared."""
    settings = accounts.settings
    prefix = settings.public_origin
    here = request.path if request.method == "GET" else "/account"
    if request.method == "GET" and request.query_string:
        here += "?" + request.query_string.decode("ascii", "replace")
    response = redirect(f"{prefix}/login?return_to={quote(here, safe='')}")
    if browser.page_access_cookie(request, settings) or browser.refresh_cookie(
            request, settings):
        browser.clear_page_cookies(response, settings)
    return response
