"""The two pages a person reaches from an email link.

``GET /verify-email?token=…`` changes nothing: mail scanners open (GET or HEAD) every
link in a message, so a GET only shows a "Confirm my email address" button, a form that
POSTs the token back to this page, which confirms the address with the same domain
function as the JSON API and says so (or redirects to ``VERIFY_REDIRECT_URL?status=…``).
``GET /reset-password?token=…`` shows a form that posts the new password back to this
page (or redirects to ``RESET_REDIRECT_URL?token=…``). Both forms post to ``PUBLIC_URL``
(its path prefix included), the address users reach, not to whatever host or path this
process saw. Plain HTML with no external assets and no script; ``Referrer-Policy:
no-referrer`` keeps the token out of any ``Referer``, and the request log records only the
route, never the query string.
"""

from __future__ import annotations

from html import escape

from quart import Blueprint, Response, request
from quart_schema import hide

from authnode.accounts import recovery, registration
from authnode.accounts.context import Accounts
from authnode.api.access import public
from authnode.api.page_render import origin_of, page, redirect, with_query
from authnode.errors import AuthnodeError, InvalidEmailToken

_LINK_DEAD = ("This link does not work",
              "<p>The link is unknown, expired or already used. Ask for a new one from the "
              "app.</p>")


def pages_blueprint(accounts: Accounts) -> Blueprint:
    bp = Blueprint("pages", __name__)
    settings = accounts.settings
    public_url = settings.public_origin  # PUBLIC_URL without a trailing slash
    form_origin = origin_of(public_url)

    def form_page(title: str, action: str, fields: str, button: str,
                  status: int = 200) -> Response:
        return page(title, (
            f'<form method="post" action="{escape(public_url + action)}">{fields}'
            f'<button type="submit">{escape(button)}</button></form>'),
            status, form_origin=form_origin)

    def confirm_form(token: str) -> Response:
        return form_page(
            "Confirm your email address", "/verify-email",
            "<p>Press the button to confirm that this email address is yours and create "
            "the account. If you did not ask for an account, close this page: nothing "
            "happens unless you press it.</p>"
            f'<input type="hidden" name="token" value="{escape(token)}">',
            "Confirm my email address")

    def reset_form(token: str, error: str | None = None, status: int = 200) -> Response:
        message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
        return form_page(
            "Choose a new password", "/reset-password",
            f'{message}<input type="hidden" name="token" value="{escape(token)}">'
            '<label for="password">New password (8 to 128 characters)</label>'
            '<input id="password" name="password" type="password" '
            'autocomplete="new-password" minlength="8" maxlength="128" required>',
            "Set password", status)

    @bp.get("/verify-email")
    @public
    @hide
    async def verify_email_page() -> Response:
        """Shows the button only: a GET (or HEAD) of the link confirms nothing."""
        token = request.args.get("token", "")
        if not token:
            return page(_LINK_DEAD[0], "<p>The link has no token.</p>", 400)
        if not await registration.link_is_usable(accounts, token=token):
            return page(*_LINK_DEAD, 400)
        return confirm_form(token)

    @bp.post("/verify-email")
    @public
    @hide
    async def verify_email_submit() -> Response:
        form = await request.form
        try:
            await registration.verify_email(accounts, token=form.get("token", ""))
        except InvalidEmailToken:
            if settings.verify_redirect_url:
                return redirect(with_query(settings.verify_redirect_url, status="invalid"))
            return page(*_LINK_DEAD, 400)
        if settings.verify_redirect_url:
            return redirect(with_query(settings.verify_redirect_url, status="verified"))
        return page("Email address verified",
                     "<p>Thank you. Your email address is verified; you can log in now.</p>")

    @bp.get("/reset-password")
    @public
    @hide
    async def reset_password_page() -> Response:
        token = request.args.get("token", "")
        if settings.reset_redirect_url:
            return redirect(with_query(settings.reset_redirect_url, token=token))
        if not token:
            return page(_LINK_DEAD[0], "<p>The link has no token.</p>", 400)
        return reset_form(token)

    @bp.post("/reset-password")
    @public
    @hide
    async def reset_password_submit() -> Response:
        form = await request.form
        token = form.get("token", "")
        try:
            await recovery.reset_password(accounts, token=token,
                                          password=form.get("password", ""))
        except InvalidEmailToken:
            return page(*_LINK_DEAD, 400)
        except AuthnodeError as error:
            if error.status == 422:
                return reset_form(token, error.message, 422)
            raise
        return page("Password changed",
                     "<p>Your password is changed and every session was signed out. "
                     "You can log in with the new password now.</p>")

    return bp
