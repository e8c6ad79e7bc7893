"""Who may call a route, declared on the route once: ``@public`` or ``@requires(USER)``.

One ``before_request`` hook (:func:`authenticate_request`) enforces the declaration and
quart-schema's security marker documents it in OpenAPI, from the same decorator, so the
two cannot disagree. A view without a declaration is refused (401) and logged as a bug:
fail closed; ``tests/unit/api/test_route_access.py`` walks the URL map so none ships.

Starlette's ``requires()`` is the model. Assurance is declared with the kind:
``recent=True`` (an authentication within ``REAUTH_MAX_AGE_S``) and ``step_up=True`` (with
a second factor enrolled: AAL2 and recent), answered 403 ``reauthentication_required``.
A login waiting for its second factor is not a principal: its ``mfa_token`` is accepted
only in the body of ``/v1/auth/mfa*``, never as a bearer token. Kinds other than a user
session (an admin key) join :class:`PrincipalKind` with the features that issue them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from quart import Quart, Response, g, request
from quart_schema import security_scheme

from authnode.accounts.authentication import authenticate
from authnode.accounts.context import Accounts
from authnode.api import browser, page_session
from authnode.api.requests import bearer_token, client_ip
from authnode.errors import InvalidToken
from authnode.mfa.flows import require_step_up
from authnode.operators import keys as admin_keys
from authnode.operators.keys import SCOPES
from authnode.shared.online import OnlineUsers

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

ACCESS_ATTRIBUTE = "_authnode_access"
BEARER_SCHEME = "bearer"
BEARER: list[dict[str, list[str]]] = [{BEARER_SCHEME: []}]
ADMIN_KEY_SCHEME = "adminKey"

# Routes that quart-schema and Quart add themselves; they serve public documents.
FRAMEWORK_PUBLIC_ENDPOINTS = frozenset({"static", "openapi", "swagger_ui"})


class PrincipalKind(enum.Enum):
    USER = "user"  # an access token of a live session
    ADMIN_KEY = "admin_key"  # an operator's API key (``ak_…``), with scopes
    PAGE_USER = "page_user"  # a browser signed in to the hosted pages (its cookies)


USER = PrincipalKind.USER
PAGE_USER = PrincipalKind.PAGE_USER


@dataclass(frozen=True)
class AdminScope:
    scope: str


def admin_scope(scope: str) -> AdminScope:
    """An admin key holding ``scope`` (``@requires(admin_scope("users:write"))``)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown admin scope {scope!r}")
    return AdminScope(scope)


@dataclass(frozen=True)
class Access:
    """What a route needs. ``kinds`` empty: anyone. ``with_profile``: read the user's
    profile-cache entry in the same Redis round trip as the revocation check."""

    kinds: frozenset[PrincipalKind]
    with_profile: bool = False
    admin_scopes: frozenset[str] = frozenset()
    recent: bool = False
    step_up: bool = False

    @property
    def is_public(self) -> bool:
        return not self.kinds


PUBLIC = Access(frozenset())


def public(view: F) -> F:
    """Anyone may call this route."""
    setattr(view, ACCESS_ATTRIBUTE, PUBLIC)
    return view


def requires(*needs: PrincipalKind | AdminScope, with_profile: bool = False,
             recent: bool = False, step_up: bool = False) -> Callable[[F], F]:
    """Only these kinds of principal may call the route; documented as bearer auth (an
    admin scope: as the admin-key scheme). ``recent``: the token's authentication is at
    most ``REAUTH_MAX_AGE_S`` old. ``step_up``: when the user has a second factor, the token
    is AAL2 and recent."""
    if not needs:
        raise ValueError("requires() needs at least one kind of principal; use @public")
    scopes = frozenset(n.scope for n in needs if isinstance(n, AdminScope))
    kinds = frozenset(n for n in needs if isinstance(n, PrincipalKind))
    if scopes:
        kinds |= {PrincipalKind.ADMIN_KEY}
    if len(kinds) > 1:
        raise ValueError("a route takes one kind of principal (user, page user, admin key)")
    access = Access(kinds, with_profile=with_profile, recent=recent, step_up=step_up,
                    admin_scopes=scopes)
    scheme = ADMIN_KEY_SCHEME if scopes else BEARER_SCHEME

    def declare(view: F) -> F:
        setattr(view, ACCESS_ATTRIBUTE, access)
        if kinds == {PrincipalKind.PAGE_USER}:
            return view  # a hosted page (hidden from OpenAPI): its cookies, no scheme
        documented: F = security_scheme([{scheme: sorted(scopes)}])(view)
        return documented

    return declare


def access_of(app: Quart, endpoint: str) -> Access | None:
    """The declaration of an endpoint; None if it has none (a bug)."""
    if endpoint in FRAMEWORK_PUBLIC_ENDPOINTS:
        return PUBLIC
    view = app.view_functions.get(endpoint)
    return getattr(view, ACCESS_ATTRIBUTE, None) if view is not None else None


def install(app: Quart, accounts: Accounts, online: OnlineUsers) -> None:
    """Enforce every route's declaration before its view runs."""

    settings = accounts.settings

    @app.before_request
    async def authenticate_request() -> Response | None:
        endpoint = request.endpoint
        if endpoint is None:  # no route matched: Quart answers 404/405
            return None
        if request.method == "OPTIONS":  # Quart's automatic answer (a CORS preflight)
            return None
        access = access_of(app, endpoint)
        if access is None:
            log.error("route without an access declaration refused",
                      extra={"route": endpoint})
            raise InvalidToken()
        if access.is_public:
            return None
        if PrincipalKind.PAGE_USER in access.kinds:
            return await _page_user(access)
        bearer = bearer_token(request)
        if PrincipalKind.ADMIN_KEY in access.kinds:
            admin = await admin_keys.authenticate(
                accounts.admin_keys, accounts.limiter, accounts.settings, bearer,
                needs=access.admin_scopes)
            g.principal = admin
            g.actor = admin.actor  # the audit log's actor for what this request does
            return None
        if admin_keys.is_admin_key(bearer):
            raise InvalidToken()  # an admin key is no user's credential
        g.principal = await authenticate(accounts, bearer,
                                         read_profile=access.with_profile)
        if access.step_up or access.recent:
            await require_step_up(accounts, g.principal, always_recent=access.recent)
        online.mark(g.principal.user_id)  # memory only; flushed to Redis in the background
        return None

    async def _page_user(access: Access) -> Response | None:
        """A hosted page: the browser's cookies; a form post must come from an allowed
        origin (CSRF) before anything else happens. Not signed in: off to ``/login``."""
        if request.method not in ("GET", "HEAD"):
            browser.check_origin(request, settings)
        session = await page_session.open_session(
            accounts, request, ip=client_ip(request, trusted_proxies=settings.trusted_proxies))
        if session is None:
            return page_session.sign_in_redirect(request, accounts)
        g.principal = session.principal
        g.page_tokens = session.renewed
        online.mark(session.principal.user_id)
        return None
