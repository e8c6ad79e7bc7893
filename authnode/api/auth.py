"""``/v1/auth``: register, verify, login, refresh, logout, password flows."""

from __future__ import annotations

from quart import Blueprint, Response, g, request
from quart_schema import document_response, validate_request

from authnode.accounts import authentication, recovery, registration
from authnode.accounts.context import Accounts
from authnode.api import browser, schemas
from authnode.api.access import USER, public, requires
from authnode.api.documentation import no_content
from authnode.api.requests import client_ip, user_agent
from authnode.errors import InvalidToken
from authnode.observability.metrics import Metrics

ACCEPTED = ({"status": "verification_sent"}, 202)


def _empty(status: int = 204) -> Response:
    return Response("", status=status)


def auth_blueprint(accounts: Accounts, metrics: Metrics) -> Blueprint:
    bp = Blueprint("auth", __name__, url_prefix="/v1/auth")
    settings = accounts.settings
    trusted_proxies = settings.trusted_proxies

    def ip() -> str:
        """The client address (an IPv6 client's /64): the subject of per-address limits."""
        return client_ip(request, trusted_proxies=trusted_proxies)

    @bp.post("/register")
    @public
    @validate_request(schemas.RegisterRequest)
    @document_response(schemas.Status, 202)
    @document_response(schemas.Error, 422)
    @document_response(schemas.Error, 429)
    async def register(data: schemas.RegisterRequest) -> tuple[dict[str, str], int]:
        """Create an account; the verification email is sent in the background.

        The answer is the same whether or not the address already has an account."""
        await registration.register(accounts, email=data.email, password=data.password,
                                    name=data.name, ip=ip())
        return ACCEPTED

    @bp.post("/verify-email")
    @public
    @validate_request(schemas.TokenRequest)
    @document_response(schemas.VerifiedUser, 200)
    @document_response(schemas.Error, 400)
    async def verify_email(data: schemas.TokenRequest) -> dict[str, object]:
        """Confirm an address with the token from the emailed link.

        This creates the account, with the password and name of the registration that
        sent the link. The first link of an address to be confirmed wins; every other
        link of that address answers 400 from then on."""
        return {"user": await registration.verify_email(accounts, token=data.token)}

    @bp.post("/verify-email/resend")
    @public
    @validate_request(schemas.EmailRequest)
    @document_response(schemas.Status, 202)
    @document_response(schemas.Error, 429)
    async def resend(data: schemas.EmailRequest) -> tuple[dict[str, str], int]:
        """Send a new verification link if the address has an unverified account."""
        await registration.resend_verification(accounts, email=data.email, ip=ip())
        return ACCEPTED

    @bp.post("/login")
    @public
    @validate_request(schemas.LoginRequest)
    @document_response(schemas.Tokens, 200)
    @document_response(schemas.MfaRequired, 401)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 429)
    async def login(data: schemas.LoginRequest) -> Response:
        """Exchange email and password for an access token and a refresh token.

        With a second factor enrolled the answer is 401 ``mfa_required`` with an
        ``mfa_token`` (5 minutes, for ``/v1/auth/mfa*`` only) and the usable ``methods``;
        a wrong password is 401 ``invalid_credentials``."""
        with metrics.login_attempt():  # counts the outcome, re-raises errors
            issued = await authentication.login(accounts, email=data.email,
                                                password=data.password, ip=ip(),
                                                user_agent=user_agent(request))
        return browser.tokens_response(schemas.Tokens.body(issued), settings,
                                       cookie=data.transport == "cookie")

    @bp.post("/refresh")
    @public
    @validate_request(schemas.RefreshRequest)
    @document_response(schemas.Tokens, 200)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 429)
    async def refresh(data: schemas.RefreshRequest) -> Response:
        """Rotate a refresh token: the answer carries a new one; the old one is spent.

        Without ``refresh_token`` in the body, the cookie of a cookie-transport login is
        used (and rotated), from an allowed origin only (403 ``csrf_failed``). Refused
        (401) once the session was ended, even by a logout or password change that failed
        halfway. Limited per client address (``REFRESH_IP_LIMIT``)."""
        token = data.refresh_token
        if token is None:
            token = browser.refresh_cookie(request, settings)
            if token is None:
                raise InvalidToken("No refresh token in the body or the cookie.")
            browser.check_origin(request, settings)
        issued = await authentication.refresh(accounts, refresh_token=token, ip=ip())
        return browser.tokens_response(schemas.Tokens.body(issued), settings,
                                       cookie=data.refresh_token is None)

    @bp.post("/logout")
    @requires(USER)
    @document_response(schemas.Error, 401)
    @no_content()
    async def logout() -> Response:
        """End this session: its access and refresh tokens stop working at once.

        Safe to retry: a retry after a failure finishes the job."""
        await authentication.end_session(accounts, g.principal.user_id, g.principal.session_id)
        response = _empty()
        browser.clear_refresh_cookie(response, settings)
        return response

    @bp.post("/logout-all")
    @requires(USER)
    @document_response(schemas.Error, 401)
    @no_content()
    async def logout_all() -> Response:
        """End every session of this user."""
        await authentication.end_all_sessions(accounts, g.principal.user_id)
        return _empty()

    @bp.post("/password/forgot")
    @public
    @validate_request(schemas.EmailRequest)
    @document_response(schemas.Status, 202)
    @document_response(schemas.Error, 429)
    async def forgot(data: schemas.EmailRequest) -> tuple[dict[str, str], int]:
        """Email a reset link if the address has an account (same answer either way)."""
        await recovery.forgot_password(accounts, email=data.email, ip=ip())
        return {"status": "reset_sent"}, 202

    @bp.post("/password/reset")
    @public
    @validate_request(schemas.ResetPasswordRequest)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 422)
    @no_content()
    async def reset(data: schemas.ResetPasswordRequest) -> Response:
        """Set a new password with the emailed token; every session of the user ends."""
        await recovery.reset_password(accounts, token=data.token, password=data.password)
        return _empty()

    @bp.post("/password/change")
    @requires(USER, step_up=True)
    @validate_request(schemas.ChangePasswordRequest)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 422)
    @document_response(schemas.Error, 429)
    @no_content()
    async def change(data: schemas.ChangePasswordRequest) -> Response:
        """Change the password; every other session ends. A wrong current password
        counts against the account's lockout as a failed login does (429 when locked)."""
        await recovery.change_password(accounts, g.principal,
                                       current_password=data.current_password,
                                       new_password=data.new_password, ip=ip())
        return _empty()

    return bp

