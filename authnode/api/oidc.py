"""``/v1/auth/oidc``: sign in with an OpenID Connect provider; ``/v1/users/me/identities``:
the signed-in user's linked providers. The flow is in :mod:`authnode.oidc.flow`."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from quart import Blueprint, Response, g, request
from quart_schema import document_response, validate_request

from authnode.accounts.models import IssuedTokens
from authnode.api import browser, schemas
from authnode.api.access import USER, public, requires
from authnode.api.documentation import no_content
from authnode.api.requests import client_ip, user_agent
from authnode.api.return_urls import safe_return_url
from authnode.errors import InvalidRequest
from authnode.observability.metrics import Metrics
from authnode.oidc.errors import InvalidReturnTo
from authnode.oidc.flow import PKCE_VALUE, STATE_TTL_S, Oidc, browser_cookie_name
from authnode.oidc.providers import login_buttons
from authnode.settings import Settings

MODES = ("app", "page")
# Where the page flavour continues when the sign-in needs more than the provider (a
# second factor, or confirming a link): the hosted login page, with a one-time code to
# exchange at POST /v1/auth/oidc/exchange.
PAGE_CONTINUE = "/login"
OIDC_PATH = "/v1/auth/oidc/"  # under PUBLIC_URL's path: the browser-binding cookie's


def checked_return_to(settings: Settings, raw: str | None, *, required: bool) -> str:
    """``raw`` made absolute when :func:`safe_return_url` allows it; otherwise 400 (not
    the silent fallback of the pages: an app asked to get its code somewhere)."""
    if not raw:
        if required:
            raise InvalidReturnTo("return_to is required: where to send the one-time code.")
        return safe_return_url(settings, None)
    first = safe_return_url(settings, raw, default="/\x01a")
    if first != safe_return_url(settings, raw, default="/\x01b"):  # it fell back
        raise InvalidReturnTo()
    return first


def with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _redirect(location: str, status: int = 302) -> Response:
    return Response("", status=status, headers={"Location": location,
                                                "Cache-Control": "no-store",
                                                "Referrer-Policy": "no-referrer"})


def oidc_blueprint(oidc: Oidc, metrics: Metrics) -> Blueprint:
    bp = Blueprint("oidc", __name__)
    accounts = oidc.accounts
    settings = accounts.settings

    cookie_path = (urlsplit(settings.public_origin).path or "") + OIDC_PATH

    def ip() -> str:
        return client_ip(request, trusted_proxies=settings.trusted_proxies)

    def tokens(issued: IssuedTokens, transport: str) -> Response:
        return browser.tokens_response(schemas.Tokens.body(issued), settings,
                                       cookie=transport == "cookie")

    @bp.get("/v1/auth/oidc/providers")
    @public
    @document_response(schemas.Providers, 200)
    async def providers() -> dict[str, object]:
        """The configured providers (for "Sign in with …" buttons)."""
        return {"providers": [{"name": name, "display_name": shown}
                              for name, shown in login_buttons(settings)]}

    @bp.get("/v1/auth/oidc/<provider>/start")
    @public
    @no_content(302)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 404)
    @document_response(schemas.Error, 422)
    @document_response(schemas.Error, 429)
    @document_response(schemas.Error, 503)
    async def start(provider: str) -> Response:
        """Redirect (302) to the provider. ``return_to``: where to come back (a path here,
        or a URL under ``RETURN_URL_ALLOWLIST``; required for ``mode=app``); ``mode``:
        ``app`` (default: back to ``return_to?code=…``, a one-time code for
        ``POST /v1/auth/oidc/exchange``) or ``page`` (the hosted pages: cookies set, then
        ``return_to``). ``code_challenge`` (optional, S256): the app's own PKCE challenge;
        the exchange then needs its ``code_verifier``."""
        oidc.provider(provider)  # 404 before anything else
        mode = request.args.get("mode", "app")
        if mode not in MODES:
            raise InvalidRequest("mode must be app or page.")
        target = checked_return_to(settings, request.args.get("return_to"),
                                   required=mode == "app")
        app_challenge = request.args.get("code_challenge")
        if app_challenge is not None and (
                not PKCE_VALUE.fullmatch(app_challenge)
                or request.args.get("code_challenge_method", "S256") != "S256"):
            raise InvalidRequest("code_challenge must be an S256 PKCE challenge "
                                 "(43 to 128 characters of base64url).")
        await accounts.limiter.check("oidc_ip", ip(), settings.login_ip_limit)
        started = await oidc.start(provider, return_to=target, mode=mode,
                                   app_challenge=app_challenge)
        response = _redirect(started.authorization_url)
        assert started.browser_key is not None
        response.set_cookie(browser_cookie_name(started.state), started.browser_key,
                            max_age=STATE_TTL_S, path=cookie_path,
                            secure=not browser.is_development(settings), httponly=True,
                            samesite="Lax")
        return response

    @bp.get("/v1/auth/oidc/<provider>/callback")
    @public
    @no_content(302)
    @no_content(303)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 404)
    @document_response(schemas.Error, 409)
    @document_response(schemas.Error, 503)
    async def callback(provider: str) -> Response:
        """Where the provider sends the browser back (``PUBLIC_URL/v1/auth/oidc/<name>/
        callback`` is the redirect URI to register with it)."""
        args = request.args
        state = args.get("state") or ""
        cookie = browser_cookie_name(state)
        done = await oidc.callback(provider, state=state, code=args.get("code"),
                                   error=args.get("error"),
                                   browser_key=request.cookies.get(cookie), ip=ip(),
                                   user_agent=user_agent(request))
        if done.link_code is not None:
            return _redirect(with_query(done.return_to, link_code=done.link_code), 303)
        if done.tokens is not None:
            metrics.logins.labels(outcome="success").inc()
            response = browser.signed_in_redirect(schemas.Tokens.body(done.tokens),
                                                  settings, done.return_to)
        else:
            assert done.code is not None
            if done.mode == "page":
                response = _redirect(with_query(settings.public_origin + PAGE_CONTINUE,
                                                oidc_code=done.code,
                                                return_to=done.return_to), 303)
            else:
                response = _redirect(with_query(done.return_to, code=done.code))
        response.delete_cookie(cookie, path=cookie_path,
                               secure=not browser.is_development(settings), httponly=True,
                               samesite="Lax")
        return response

    @bp.post("/v1/auth/oidc/exchange")
    @public
    @validate_request(schemas.OidcExchangeRequest)
    @document_response(schemas.Tokens, 200)
    @document_response(schemas.Error, 400)
    @document_response(schemas.MfaRequired, 401)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 404)
    @document_response(schemas.LinkRequired, 409)
    @document_response(schemas.Error, 429)
    @document_response(schemas.Error, 503)
    async def exchange(data: schemas.OidcExchangeRequest) -> Response:
        """Exchange the one-time ``code`` (60 s, once) for the tokens body; or 401
        ``mfa_required`` (finish at ``/v1/auth/mfa``), or 409 ``link_required`` with a
        ``link_token`` when the address has an account that has not linked this provider."""
        await accounts.limiter.check("oidc_ip", ip(), settings.login_ip_limit)
        with metrics.login_attempt():
            issued = await oidc.exchange(data.code, data.code_verifier)
        return tokens(issued, data.transport)

    @bp.post("/v1/auth/oidc/link/confirm")
    @public
    @validate_request(schemas.OidcLinkConfirmRequest)
    @document_response(schemas.Tokens, 200)
    @document_response(schemas.Error, 400)
    @document_response(schemas.MfaRequired, 401)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 404)
    @document_response(schemas.Error, 409)
    @document_response(schemas.Error, 429)
    @document_response(schemas.Error, 503)
    async def confirm_link(data: schemas.OidcLinkConfirmRequest) -> Response:
        """Prove the account is yours with its password: the provider is linked to it and
        you are signed in. A wrong password counts against the lockout as a login does."""
        with metrics.login_attempt():
            issued = await oidc.confirm_link(link_token=data.link_token,
                                             password=data.password, ip=ip(),
                                             user_agent=user_agent(request))
        return tokens(issued, data.transport)

    @bp.post("/v1/auth/oidc/link/email")
    @public
    @validate_request(schemas.OidcLinkTokenRequest)
    @document_response(schemas.Status, 202)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 429)
    async def email_link(data: schemas.OidcLinkTokenRequest) -> tuple[dict[str, str], int]:
        """Prove the account by its mailbox instead: its owner gets a link
        (``PUBLIC_URL/link-account?token=…``) to confirm at
        ``POST /v1/auth/oidc/link/confirm-email``."""
        await accounts.limiter.check("oidc_ip", ip(), settings.login_ip_limit)
        await oidc.email_link(link_token=data.link_token)
        return {"status": "link_email_sent"}, 202

    @bp.post("/v1/auth/oidc/link/confirm-email")
    @public
    @validate_request(schemas.OidcLinkEmailConfirmRequest)
    @document_response(schemas.Tokens, 200)
    @document_response(schemas.Error, 400)
    @document_response(schemas.MfaRequired, 401)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 404)
    @document_response(schemas.Error, 409)
    @document_response(schemas.Error, 429)
    async def confirm_link_email(data: schemas.OidcLinkEmailConfirmRequest) -> Response:
        """The emailed link's token: the provider is linked and you are signed in (403
        ``sign_in_to_link`` for an account with a second factor)."""
        await accounts.limiter.check("oidc_ip", ip(), settings.login_ip_limit)
        with metrics.login_attempt():
            issued = await oidc.confirm_emailed_link(token=data.token, ip=ip(),
                                                     user_agent=user_agent(request))
        return tokens(issued, data.transport)

    @bp.get("/v1/users/me/identities")
    @requires(USER)
    @document_response(schemas.Identities, 200)
    @document_response(schemas.Error, 401)
    async def identities() -> dict[str, object]:
        """The providers linked to this account."""
        return {"identities": await oidc.identities(g.principal)}

    @bp.post("/v1/users/me/identities/<provider>")
    @requires(USER, step_up=True, recent=True)
    @validate_request(schemas.OidcLinkStartRequest)
    @document_response(schemas.AuthorizationUrl, 200)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 404)
    @document_response(schemas.Error, 503)
    async def link_start(provider: str, data: schemas.OidcLinkStartRequest) -> dict[str, str]:
        """Start linking a provider to this account: open ``authorization_url`` in the
        browser; it comes back to ``return_to?link_code=…`` (5 minutes), which this user
        posts to ``POST /v1/users/me/identities`` to finish."""
        oidc.provider(provider)
        target = checked_return_to(settings, data.return_to, required=False)
        started = await oidc.start(provider, return_to=target, mode="page",
                                   link_user_id=g.principal.user_id)
        return {"authorization_url": started.authorization_url}

    @bp.post("/v1/users/me/identities")
    @requires(USER)
    @validate_request(schemas.OidcLinkCodeRequest)
    @document_response(schemas.Identity, 201)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 404)
    @document_response(schemas.Error, 409)
    async def link_finish(data: schemas.OidcLinkCodeRequest) -> tuple[dict[str, object], int]:
        """Finish a link with the ``link_code`` its callback gave, with the same user's
        token (a code is another user's or used: 400); 409 ``identity_in_use`` if that
        provider account is someone else's."""
        return await oidc.confirm_own_link(g.principal, data.link_code), 201

    @bp.delete("/v1/users/me/identities/<identity_id>")
    @requires(USER, step_up=True)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 404)
    @document_response(schemas.Error, 409)
    @no_content()
    async def unlink(identity_id: str) -> Response:
        """Unlink a provider; 409 ``last_sign_in_method`` if nothing else would sign you
        in (no password, passkey or other provider)."""
        await oidc.unlink(g.principal, identity_id)
        return Response("", status=204)

    return bp
