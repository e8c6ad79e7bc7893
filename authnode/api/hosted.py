"""The hosted pages: ``/login``, ``/register``, ``/forgot-password`` and ``/account``.

Server-rendered forms that work without JavaScript (only passkeys need the one script,
``/assets/pages.js``), calling the same domain functions as the JSON API. Signing in sets
the browser's cookies (:func:`browser.signed_in_redirect`) and goes to ``?return_to=`` if
:func:`return_urls.safe_return_url` allows it, else to ``/account``. Every form post must
come from an allowed origin (:func:`browser.check_origin`, 403 ``csrf_failed``) — the
public forms too, so another site cannot sign a browser in to an account of its choosing.
After an action the account page is reached again by a redirect (post/redirect/get),
with a confirmation chosen from a fixed list, never text from the URL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape
from importlib import resources
from typing import Any

from quart import Blueprint, Response, g, request
from quart_schema import hide

from authnode.accounts import authentication, profile, recovery, registration
from authnode.accounts.context import Accounts
from authnode.accounts.models import IssuedTokens
from authnode.api import browser, schemas
from authnode.api.access import PAGE_USER, public, requires
from authnode.api.page_render import field, hidden, message, origin_of, page, redirect
from authnode.api.requests import client_ip, user_agent
from authnode.api.return_urls import safe_return_url
from authnode.errors import (
    AuthnodeError,
    InvalidRequest,
    MfaRequired,
    ReauthenticationRequired,
)
from authnode.mfa import flows
from authnode.observability.metrics import Metrics
from authnode.oidc.errors import LinkRequired
from authnode.oidc.flow import Oidc
from authnode.oidc.providers import login_buttons, start_path

MAX_FIELD_CHARS = 4096
SCRIPT_PATH = "/assets/pages.js"
SCRIPT_MAX_AGE_S = 300

# What ``/account?done=…`` may say: a fixed list, so a link cannot put words on the page.
DONE = {
    "name": "Your name is saved.",
    "password": "Your password is changed; your other sessions are signed out.",
    "session": "That session is signed out.",
    "totp-off": "The authenticator app is removed.",
    "passkey-added": "The passkey is added.",
    "passkey-removed": "The passkey is removed.",
    "identity-linked": "The provider is linked: you can sign in with it now.",
    "identity-unlinked": "The provider is unlinked.",
}
REAUTHENTICATE = "For this, sign in again (with your second step, if you have one)."
SIGN_IN_AGAIN = "/login?return_to=%2Faccount"
SIGNED_OUT = {
    "out": "You are signed out.",
    "everywhere": "You are signed out on every device.",
}


def hosted_blueprint(accounts: Accounts, metrics: Metrics, oidc: Oidc | None = None
                     ) -> Blueprint:
    bp = Blueprint("hosted", __name__)
    settings = accounts.settings
    public_url = settings.public_origin
    form_origin = origin_of(public_url)
    script = resources.files("authnode.api").joinpath("assets/pages.js").read_bytes()

    def ip() -> str:
        return client_ip(request, trusted_proxies=settings.trusted_proxies)

    async def form() -> dict[str, str]:
        values = await request.form
        found = {name: values.get(name, "") for name in values}
        if any(len(value) > MAX_FIELD_CHARS for value in found.values()):
            raise InvalidRequest(f"A field is longer than {MAX_FIELD_CHARS} characters.")
        return found

    def render(title: str, body: str, status: int = 200, *, script_needed: bool = False
               ) -> Response:
        return page(title, body, status, form_origin=form_origin,
                    script_src=public_url + SCRIPT_PATH if script_needed else None)

    def form_html(action: str, inner: str, button: str, *, inline: bool = False) -> str:
        css = ' class="inline"' if inline else ""
        return (f'<form method="post" action="{escape(public_url + action)}"{css}>{inner}'
                f'<button type="submit">{escape(button)}</button></form>')

    def link(path: str, text: str) -> str:
        return f'<a href="{escape(public_url + path)}">{escape(text)}</a>'

    def passkey_button(action: str, text: str, next_url: str, **data: str) -> str:
        """Hidden until the script finds WebAuthn in this browser."""
        extra = "".join(f' data-{escape(k.replace("_", "-"))}="{escape(v)}"'
                        for k, v in data.items())
        status_id = f"{action}-status"
        return (f'<button type="button" hidden data-action="{escape(action)}" '
                f'data-api="{escape(public_url)}" data-next="{escape(next_url)}" '
                f'data-status="{status_id}"{extra}>{escape(text)}</button>'
                f'<p id="{status_id}" class="error" role="alert"></p>')

    def signed_in(issued: IssuedTokens, return_to: str | None) -> Response:
        """The browser signed in (cookies) and sent where ``return_to`` may go."""
        return browser.signed_in_redirect(schemas.Tokens.body(issued), settings,
                                          safe_return_url(settings, return_to))

    def no_provider() -> Response:
        return login_page("", error="No sign-in provider is configured.", status=404)

    def provider_buttons(next_url: str) -> str:
        """A "Sign in with …" link per OpenID Connect provider (``OIDC_PROVIDERS``)."""
        if oidc is None:
            return ""
        return "".join(
            f'<p><a class="button" href="'
            f'{escape(public_url + start_path(name, return_to=next_url, mode="page"))}">'
            f"Sign in with {escape(shown)}</a></p>"
            for name, shown in login_buttons(settings))

    @bp.before_request
    async def same_origin_forms() -> None:
        if request.method == "POST":
            browser.check_origin(request, settings)

    @bp.after_request
    async def renew_cookies(response: Response) -> Response:
        """A page view that had to rotate the refresh cookie hands the new cookies on."""
        renewed = g.get("page_tokens")
        if renewed and not response.headers.get("Set-Cookie"):
            browser.set_page_cookies(response, settings, renewed)
        return response

    @bp.get(SCRIPT_PATH)
    @public
    @hide
    async def page_script() -> Response:
        return Response(script, headers={
            "Content-Type": "text/javascript; charset=utf-8",
            "Cache-Control": f"public, max-age={SCRIPT_MAX_AGE_S}"})

    # ------------------------------------------------------------------ signing in

    def login_page(return_to: str, *, error: str | None = None, notice: str | None = None,
                   email: str = "", status: int = 200) -> Response:
        next_url = safe_return_url(settings, return_to)
        body = (message(error) + message(notice, error=False)
                + form_html("/login", (
                    hidden("return_to", return_to)
                    + field("email", "Email address", kind="email", autocomplete="username",
                            value=email)
                    + field("password", "Password", kind="password",
                            autocomplete="current-password")), "Sign in")
                + passkey_button("passkey-login", "Sign in with a passkey", next_url)
                + provider_buttons(next_url)
                + f"<p>{link('/register', 'Create an account')} · "
                f"{link('/forgot-password', 'Forgot your password?')}</p>")
        return render("Sign in", body, status, script_needed=True)

    def second_factor_page(mfa_token: str, methods: list[str], return_to: str, *,
                           error: str | None = None, status: int = 200) -> Response:
        next_url = safe_return_url(settings, return_to)
        body = message(error)
        if "totp" in methods or "recovery_code" in methods:
            body += form_html("/login/second-factor", (
                hidden("mfa_token", mfa_token) + hidden("return_to", return_to)
                + field("code", "Code from your authenticator app, or a recovery code",
                        autocomplete="one-time-code", extra='inputmode="text"')), "Continue")
        if "webauthn" in methods:
            body += passkey_button("passkey-login", "Use a passkey", next_url,
                                   mfa_token=mfa_token)
        body += f"<p>{link('/login', 'Start again')}</p>"
        return render("Second step", body, status, script_needed=True)

    @bp.get("/login")
    @public
    @hide
    async def login_form() -> Response:
        return_to = request.args.get("return_to", "")
        oidc_code = request.args.get("oidc_code")
        if oidc_code and oidc is not None:
            return await continue_provider_sign_in(oidc, oidc_code[:256], return_to)
        notice = SIGNED_OUT.get(request.args.get("signed_out", ""))
        return login_page(return_to, notice=notice)

    async def continue_provider_sign_in(oidc: Oidc, code: str, return_to: str) -> Response:
        """Where a provider sign-in that needs more lands (``/login?oidc_code=…``, from
        the callback, once): the second step, or proving an existing account is yours
        before the provider is linked to it."""
        try:
            with metrics.login_attempt():
                issued = await oidc.exchange(code)
        except MfaRequired as pending:
            return second_factor_page(pending.mfa_token, pending.methods, return_to)
        except LinkRequired as needed:
            return link_page(needed, return_to)
        except AuthnodeError as error:
            return login_page(return_to, error=error.message, status=error.status)
        return signed_in(issued, return_to)

    def link_page(needed: LinkRequired, return_to: str, *, error: str | None = None,
                  status: int = 200) -> Response:
        names = dict(login_buttons(settings))
        shown = names.get(needed.provider, needed.provider)
        body = message(error) + (
            f"<p>An account with the address <strong>{escape(needed.email)}</strong> "
            f"already exists. To sign in to it with {escape(shown)} from now on, show that "
            "it is yours first. Nothing is linked until you do.</p>")
        token = hidden("link_token", needed.link_token) + hidden("return_to", return_to)
        if "password" in needed.methods:
            body += form_html("/login/link", token + field(
                "password", "The account's password", kind="password",
                autocomplete="current-password"), "Link and sign in")
        if "email" in needed.methods:
            body += form_html("/login/link-email", token, "Email me a link instead")
        body += (f"<p>Or {link('/login', 'sign in to the account')} (with its second step, "
                 f"if it has one) and link {escape(shown)} from your account page.</p>")
        return render("Link your account", body, status)

    @bp.post("/login/link")
    @public
    @hide
    async def link_with_password() -> Response:
        if oidc is None:
            return no_provider()
        values = await form()
        return_to = values.get("return_to", "")
        try:
            with metrics.login_attempt():
                issued = await oidc.confirm_link(
                    link_token=values.get("link_token", ""),
                    password=values.get("password", ""), ip=ip(),
                    user_agent=user_agent(request))
        except AuthnodeError as error:
            return login_page(return_to, error=error.message, status=error.status)
        return signed_in(issued, return_to)

    @bp.post("/login/link-email")
    @public
    @hide
    async def link_by_email() -> Response:
        if oidc is None:
            return no_provider()
        values = await form()
        try:
            await accounts.limiter.check("oidc_ip", ip(), settings.login_ip_limit)
            await oidc.email_link(link_token=values.get("link_token", ""))
        except AuthnodeError as error:
            return login_page(values.get("return_to", ""), error=error.message,
                              status=error.status)
        return render("Check your email", (
            "<p>We sent the account's address a link. Open it and press the button to "
            f"link the provider and sign in.</p><p>{link('/login', 'Back to sign in')}</p>"))

    @bp.get("/link-account")
    @public
    @hide
    async def link_account_page() -> Response:
        """The emailed link: a button, so that opening the link (a mail scanner) links
        nothing."""
        token = request.args.get("token", "")
        return render("Link a sign-in provider", (
            "<p>Press the button to link the provider you signed in with to this account, "
            "and sign in. If you did not ask for this, close this page: nothing happens "
            "unless you press it.</p>"
            + form_html("/link-account", hidden("token", token), "Link and sign in")))

    @bp.post("/link-account")
    @public
    @hide
    async def link_account_submit() -> Response:
        if oidc is None:
            return no_provider()
        values = await form()
        try:
            await accounts.limiter.check("oidc_ip", ip(), settings.login_ip_limit)
            with metrics.login_attempt():
                issued = await oidc.confirm_emailed_link(
                    token=values.get("token", ""), ip=ip(), user_agent=user_agent(request))
        except AuthnodeError as error:
            return login_page("", error=error.message, status=error.status)
        return signed_in(issued, None)

    @bp.post("/login")
    @public
    @hide
    async def login_submit() -> Response:
        values = await form()
        return_to = values.get("return_to", "")
        email = values.get("email", "")
        try:
            with metrics.login_attempt():
                issued = await authentication.login(
                    accounts, email=email, password=values.get("password", ""), ip=ip(),
                    user_agent=user_agent(request))
        except MfaRequired as pending:
            return second_factor_page(pending.mfa_token, pending.methods, return_to)
        except AuthnodeError as error:
            return login_page(return_to, error=error.message, email=email,
                              status=error.status)
        return signed_in(issued, return_to)

    @bp.post("/login/second-factor")
    @public
    @hide
    async def second_factor_submit() -> Response:
        values = await form()
        return_to = values.get("return_to", "")
        mfa_token = values.get("mfa_token", "")
        try:
            issued = await flows.login_with_code(
                accounts, mfa_token=mfa_token, code=values.get("code", ""), ip=ip(),
                user_agent=user_agent(request))
        except AuthnodeError as error:
            if error.status == 400:  # a wrong code: this step again
                return second_factor_page(mfa_token, ["totp"], return_to,
                                          error=error.message, status=400)
            return login_page(return_to, error=error.message, status=error.status)
        return signed_in(issued, return_to)

    # ------------------------------------------------------------------ no account yet

    def register_page(*, error: str | None = None, email: str = "", name: str = "",
                      status: int = 200) -> Response:
        return render("Create an account", message(error) + form_html("/register", (
            field("email", "Email address", kind="email", autocomplete="email",
                  value=email)
            + field("name", "Your name (optional)", autocomplete="name", value=name,
                    required=False)
            + field("password", "Password (8 to 128 characters)", kind="password",
                    autocomplete="new-password", extra='minlength="8" maxlength="128"')),
            "Create account") + f"<p>{link('/login', 'I have an account')}</p>", status)

    @bp.get("/register")
    @public
    @hide
    async def register_form() -> Response:
        return register_page()

    @bp.post("/register")
    @public
    @hide
    async def register_submit() -> Response:
        values = await form()
        email, name = values.get("email", ""), values.get("name", "")
        try:
            await registration.register(accounts, email=email,
                                        password=values.get("password", ""),
                                        name=name or None, ip=ip())
        except AuthnodeError as error:
            return register_page(error=error.message, email=email, name=name,
                                 status=error.status)
        return render("Check your email", (
            "<p>We sent a link to that address. Open it and press the button to confirm "
            "the address; then you can sign in. If the address already has an account, "
            "the email says so instead.</p>"
            f"<p>{link('/login', 'Go to sign in')}</p>"))

    def forgot_page(*, error: str | None = None, status: int = 200) -> Response:
        return render("Forgot your password?", message(error) + form_html(
            "/forgot-password", field("email", "Email address", kind="email",
                                      autocomplete="email"), "Email me a link"), status)

    @bp.get("/forgot-password")
    @public
    @hide
    async def forgot_form() -> Response:
        return forgot_page()

    @bp.post("/forgot-password")
    @public
    @hide
    async def forgot_submit() -> Response:
        values = await form()
        try:
            await recovery.forgot_password(accounts, email=values.get("email", ""), ip=ip())
        except AuthnodeError as error:
            return forgot_page(error=error.message, status=error.status)
        return render("Check your email", (
            "<p>If that address has an account, we sent it a link to choose a new "
            f"password.</p><p>{link('/login', 'Back to sign in')}</p>"))

    # ------------------------------------------------------------------ the account

    async def account_page(*, error: str | None = None, notice: str | None = None,
                           status: int = 200, extra: str = "") -> Response:
        principal = g.principal
        me = await profile.me(accounts, principal)
        sessions = await profile.list_sessions(accounts, principal)
        passkeys = await flows.list_passkeys(accounts, principal)
        mfa = me.get("mfa", {})
        body = message(error) + message(notice, error=False) + extra
        body += (f"<p>Signed in as <strong>{escape(me['email'])}</strong>.</p>"
                 + form_html("/logout", "", "Sign out"))
        body += ("<section><h2>Your name</h2>" + form_html("/account/name", field(
            "name", "Name shown to others", autocomplete="name", value=me.get("name") or "",
            required=False), "Save name") + "</section>")
        body += ("<section><h2>Password</h2>" + form_html("/account/password", (
            field("current_password", "Current password", kind="password",
                  autocomplete="current-password")
            + field("new_password", "New password (8 to 128 characters)", kind="password",
                    autocomplete="new-password", extra='minlength="8" maxlength="128"')),
            "Change password") + "</section>")
        rows = "".join(
            f"<tr><td>{escape(s['user_agent'] or 'Unknown device')}</td>"
            f"<td>{escape(s['ip'] or '')}</td><td>{escape(s['created_at'])}</td><td>"
            + ("This device" if s["current"] else form_html(
                f"/account/sessions/{s['id']}/end", "", "Sign out", inline=True))
            + "</td></tr>" for s in sessions)
        body += ("<section><h2>Sessions</h2><table><thead><tr><th>Device</th>"
                 "<th>Address</th><th>Signed in</th><th></th></tr></thead>"
                 f"<tbody>{rows}</tbody></table>"
                 + form_html("/account/sign-out-everywhere", "", "Sign out everywhere")
                 + "</section>")
        if mfa.get("totp"):
            totp = ("<p>Authenticator app: <strong>on</strong>. "
                    f"Recovery codes left: {int(mfa.get('recovery_codes_left', 0))}.</p>"
                    + form_html("/account/totp/disable", field(
                        "code", "A code from the app (or a recovery code) to remove it",
                        autocomplete="one-time-code"), "Remove the authenticator app"))
        else:
            totp = ("<p>Authenticator app: off.</p>"
                    + form_html("/account/totp", "", "Set up an authenticator app"))
        keys = "".join(
            f"<li>{escape(p['name'])} (added {escape(p['created_at'])}) "
            + form_html(f"/account/passkeys/{p['id']}/delete", "", "Remove", inline=True)
            + "</li>" for p in passkeys)
        body += ("<section><h2>Two-step sign-in</h2>" + totp + "<h3>Passkeys</h3>"
                 + (f"<ul>{keys}</ul>" if keys else "<p>No passkeys yet.</p>")
                 + field("passkey-name", "Name for a new passkey", required=False)
                 + passkey_button("passkey-add", "Add a passkey",
                                  public_url + "/account?done=passkey-added")
                 + "</section>")
        body += await identities_section()
        body += ("<section><h2>Delete account</h2><p>This deletes your account and signs "
                 "you out everywhere. It cannot be undone.</p>"
                 + form_html("/account/delete", field(
                     "password", "Your password, to confirm", kind="password",
                     autocomplete="current-password"), "Delete my account") + "</section>")
        return render("Your account", body, status, script_needed=True)

    async def identities_section() -> str:
        if oidc is None or not settings.oidc:
            return ""
        linked = await oidc.identities(g.principal)
        items = "".join(
            f"<li>{escape(i['display_name'])} ({escape(i['email'] or '')}) "
            + form_html(f"/account/identities/{i['id']}/unlink", "", "Unlink", inline=True)
            + "</li>" for i in linked)
        have = {i["provider"] for i in linked}
        offers = "".join(form_html(f"/account/identities/{name}/link", "",
                                   f"Link {shown}", inline=True)
                         for name, shown in login_buttons(settings) if name not in have)
        return ("<section><h2>Sign-in providers</h2>"
                + (f"<ul>{items}</ul>" if items else "<p>None linked.</p>")
                + offers + "</section>")

    async def account_action(action: Callable[[dict[str, str]], Awaitable[Any]],
                             done: str, *, step_up: bool = False) -> Response:
        """Run one domain call for the signed-in user; back to the account page with its
        confirmation, or the page again with the error and its status."""
        try:
            values = await form()
            if step_up:
                await flows.require_step_up(accounts, g.principal)
            await action(values)
        except ReauthenticationRequired:
            return await account_page(error=REAUTHENTICATE, status=403,
                                      extra=f"<p>{link(SIGN_IN_AGAIN, 'Sign in again')}</p>")
        except AuthnodeError as error:
            return await account_page(error=error.message, status=error.status)
        return redirect(f"{public_url}/account?done={done}")

    @bp.get("/account")
    @requires(PAGE_USER)
    @hide
    async def account() -> Response:
        return await account_page(notice=DONE.get(request.args.get("done", "")))

    @bp.post("/account/name")
    @requires(PAGE_USER)
    @hide
    async def rename() -> Response:
        async def act(values: dict[str, str]) -> None:
            await profile.rename(accounts, g.principal, values.get("name") or None)
        return await account_action(act, "name")

    @bp.post("/account/password")
    @requires(PAGE_USER)
    @hide
    async def change_password() -> Response:
        async def act(values: dict[str, str]) -> None:
            await recovery.change_password(
                accounts, g.principal, current_password=values.get("current_password", ""),
                new_password=values.get("new_password", ""), ip=ip())
        return await account_action(act, "password", step_up=True)

    @bp.post("/account/sessions/<session_id>/end")
    @requires(PAGE_USER)
    @hide
    async def end_session(session_id: str) -> Response:
        async def act(values: dict[str, str]) -> None:
            await profile.delete_session(accounts, g.principal, session_id[:128])
        return await account_action(act, "session")

    @bp.post("/account/totp")
    @requires(PAGE_USER)
    @hide
    async def start_totp() -> Response:
        try:
            await flows.require_step_up(accounts, g.principal, always_recent=True)
            enrolment = await flows.start_totp(accounts, g.principal)
        except ReauthenticationRequired:
            return await account_page(error=REAUTHENTICATE, status=403,
                                      extra=f"<p>{link(SIGN_IN_AGAIN, 'Sign in again')}</p>")
        except AuthnodeError as error:
            return await account_page(error=error.message, status=error.status)
        return render("Set up an authenticator app", (
            "<p>Scan this code with your authenticator app, or enter the key by hand.</p>"
            f'<figure role="img" aria-label="QR code of the key">{enrolment.qr_svg}'
            "</figure>"
            f"<p>Key: <code>{escape(enrolment.secret)}</code></p>"
            + form_html("/account/totp/confirm", field(
                "code", "The 6-digit code the app shows now", autocomplete="one-time-code",
                extra='inputmode="numeric"'), "Turn on")
            + f"<p>{link('/account', 'Cancel')}</p>"))

    @bp.post("/account/totp/confirm")
    @requires(PAGE_USER)
    @hide
    async def confirm_totp() -> Response:
        values = await form()
        try:
            codes = await flows.confirm_totp(accounts, g.principal, values.get("code", ""))
        except AuthnodeError as error:
            return await account_page(error=error.message, status=error.status)
        items = "".join(f"<li><code>{escape(code)}</code></li>" for code in codes)
        return render("Authenticator app on", (
            "<p>Keep these recovery codes somewhere safe. Each works once if you do not "
            f"have the app at hand. They are shown only now.</p><ul>{items}</ul>"
            f"<p>{link('/account', 'Back to your account')}</p>"))

    @bp.post("/account/totp/disable")
    @requires(PAGE_USER)
    @hide
    async def disable_totp() -> Response:
        async def act(values: dict[str, str]) -> None:
            await flows.disable_totp(accounts, g.principal, values.get("code", ""))
        return await account_action(act, "totp-off", step_up=True)

    @bp.post("/account/passkeys/<passkey_id>/delete")
    @requires(PAGE_USER)
    @hide
    async def delete_passkey(passkey_id: str) -> Response:
        async def act(values: dict[str, str]) -> None:
            await flows.delete_passkey(accounts, g.principal, passkey_id[:128])
        return await account_action(act, "passkey-removed", step_up=True)

    @bp.post("/account/identities/<provider>/link")
    @requires(PAGE_USER)
    @hide
    async def link_identity(provider: str) -> Response:
        """Off to the provider; back at ``/account/identities/linked?link_code=…``."""
        if oidc is None:
            return await account_page(error="No sign-in provider is configured.",
                                      status=404)
        try:
            await form()
            await flows.require_step_up(accounts, g.principal, always_recent=True)
            oidc.provider(provider[:64])
            started = await oidc.start(provider[:64],
                                       return_to=public_url + "/account/identities/linked",
                                       mode="page", link_user_id=g.principal.user_id)
        except ReauthenticationRequired:
            return await account_page(error=REAUTHENTICATE, status=403,
                                      extra=f"<p>{link(SIGN_IN_AGAIN, 'Sign in again')}</p>")
        except AuthnodeError as error:
            return await account_page(error=error.message, status=error.status)
        return redirect(started.authorization_url)

    @bp.get("/account/identities/linked")
    @requires(PAGE_USER)
    @hide
    async def identity_linked() -> Response:
        """The provider sent the browser back: the link is confirmed for the signed-in
        user only (a link code forwarded to someone else links nothing)."""
        if oidc is None:
            return await account_page(error="No sign-in provider is configured.",
                                      status=404)
        try:
            await oidc.confirm_own_link(g.principal,
                                        request.args.get("link_code", "")[:256])
        except AuthnodeError as error:
            return await account_page(error=error.message, status=error.status)
        return redirect(f"{public_url}/account?done=identity-linked")

    @bp.post("/account/identities/<identity_id>/unlink")
    @requires(PAGE_USER)
    @hide
    async def unlink_identity(identity_id: str) -> Response:
        async def act(values: dict[str, str]) -> None:
            if oidc is None:
                raise InvalidRequest("No sign-in provider is configured.")
            await oidc.unlink(g.principal, identity_id[:128])
        return await account_action(act, "identity-unlinked", step_up=True)

    # ------------------------------------------------------------------ leaving

    def signed_out(reason: str) -> Response:
        response = redirect(f"{public_url}/login?signed_out={reason}")
        browser.clear_page_cookies(response, settings)
        return response

    @bp.post("/logout")
    @requires(PAGE_USER)
    @hide
    async def logout() -> Response:
        await authentication.end_session(accounts, g.principal.user_id,
                                         g.principal.session_id)
        g.page_tokens = None
        return signed_out("out")

    @bp.post("/account/sign-out-everywhere")
    @requires(PAGE_USER)
    @hide
    async def sign_out_everywhere() -> Response:
        await authentication.end_all_sessions(accounts, g.principal.user_id)
        g.page_tokens = None
        return signed_out("everywhere")

    @bp.post("/account/delete")
    @requires(PAGE_USER)
    @hide
    async def delete_account() -> Response:
        try:
            values = await form()
            await flows.require_step_up(accounts, g.principal)
            await profile.delete_account(accounts, g.principal,
                                         password=values.get("password", ""), ip=ip())
        except AuthnodeError as error:
            return await account_page(error=error.message, status=error.status)
        g.page_tokens = None
        response = render("Account deleted", (
            "<p>Your account is deleted and every session is signed out.</p>"
            f"<p>{link('/register', 'Create a new account')}</p>"))
        browser.clear_page_cookies(response, settings)
        return response

    return bp
