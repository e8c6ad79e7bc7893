"""Second factors: ``/v1/mfa/*`` (the signed-in user's factors) and the ways in that use
them (``/v1/auth/mfa*``, ``/v1/auth/passkey*``, ``/v1/auth/reauthenticate*``)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, g, request
from quart_schema import document_response, validate_request

from authnode.accounts.context import Accounts
from authnode.api import browser, schemas
from authnode.api.access import USER, public, requires
from authnode.api.documentation import no_content
from authnode.api.requests import client_ip, user_agent
from authnode.mfa import flows


def mfa_blueprint(accounts: Accounts) -> Blueprint:
    bp = Blueprint("mfa", __name__)
    trusted_proxies = accounts.settings.trusted_proxies

    def ip() -> str:
        return client_ip(request, trusted_proxies=trusted_proxies)

    # ------------------------------------------------------------------ TOTP

    @bp.post("/v1/mfa/totp")
    @requires(USER, recent=True, step_up=True)
    @document_response(schemas.TotpEnrolment, 200)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 409)
    async def start_totp() -> dict[str, Any]:
        """Start enrolling an authenticator app: scan ``qr_svg`` (or enter ``secret``), then
        confirm with a code. Nothing is enabled until then. Needs a recent authentication
        (403 ``reauthentication_required``)."""
        enrolment = await flows.start_totp(accounts, g.principal)
        return {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri,
                "qr_svg": enrolment.qr_svg}

    @bp.post("/v1/mfa/totp/confirm")
    @requires(USER)
    @validate_request(schemas.CodeRequest)
    @document_response(schemas.RecoveryCodes, 200)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 409)
    @document_response(schemas.Error, 429)
    async def confirm_totp(data: schemas.CodeRequest) -> dict[str, Any]:
        """Enable TOTP with a code from the app. The answer's ten recovery codes are shown
        once: each works once when the app is not at hand."""
        return {"recovery_codes": await flows.confirm_totp(accounts, g.principal, data.code)}

    @bp.delete("/v1/mfa/totp")
    @requires(USER, step_up=True)
    @validate_request(schemas.CodeRequest)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 404)
    @no_content()
    async def disable_totp(data: schemas.CodeRequest) -> Response:
        """Remove TOTP, confirmed with a TOTP or recovery code (and step-up)."""
        await flows.disable_totp(accounts, g.principal, data.code)
        return Response("", status=204)

    @bp.post("/v1/mfa/recovery-codes")
    @requires(USER)
    @validate_request(schemas.CodeRequest)
    @document_response(schemas.RecoveryCodes, 200)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 409)
    async def new_recovery_codes(data: schemas.CodeRequest) -> dict[str, Any]:
        """Ten fresh recovery codes, confirmed with a TOTP or recovery code; the old set
        stops working."""
        return {"recovery_codes": await flows.new_recovery_codes(accounts, g.principal,
                                                                 data.code)}

    # ------------------------------------------------------------------ passkeys

    @bp.post("/v1/mfa/webauthn/register/options")
    @requires(USER, recent=True, step_up=True)
    @document_response(schemas.PublicKeyOptions, 200)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 409)
    async def passkey_registration_options() -> dict[str, Any]:
        """Options for ``navigator.credentials.create({publicKey: …})``; the challenge
        works once, for 5 minutes, in this session."""
        return await flows.passkey_registration_options(accounts, g.principal)

    @bp.post("/v1/mfa/webauthn/register")
    @requires(USER)
    @validate_request(schemas.PasskeyRegisterRequest)
    @document_response(schemas.Passkey, 201)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 409)
    async def register_passkey(data: schemas.PasskeyRegisterRequest
                               ) -> tuple[dict[str, Any], int]:
        """Register the passkey the browser created (``PublicKeyCredential.toJSON()``)."""
        return await flows.register_passkey(accounts, g.principal,
                                            credential=data.credential, name=data.name), 201

    @bp.get("/v1/mfa/webauthn")
    @requires(USER)
    @document_response(schemas.Passkeys, 200)
    async def list_passkeys() -> dict[str, Any]:
        """The user's passkeys."""
        return {"passkeys": await flows.list_passkeys(accounts, g.principal)}

    @bp.delete("/v1/mfa/webauthn/<passkey_id>")
    @requires(USER, step_up=True)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 404)
    @no_content()
    async def delete_passkey(passkey_id: str) -> Response:
        """Remove a passkey (step-up)."""
        await flows.delete_passkey(accounts, g.principal, passkey_id)
        return Response("", status=204)

    # ------------------------------------------------------------------ finishing a login

    @bp.post("/v1/auth/mfa")
    @public
    @validate_request(schemas.MfaCodeRequest)
    @document_response(schemas.Tokens, 200)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 429)
    async def login_with_code(data: schemas.MfaCodeRequest) -> Response:
        """Finish a login with a TOTP or recovery code. 5 wrong codes end the
        ``mfa_token`` (429 after); a TOTP code is accepted once."""
        issued = await flows.login_with_code(accounts, mfa_token=data.mfa_token,
                                             code=data.code, ip=ip(),
                                             user_agent=user_agent(request))
        return browser.tokens_response(schemas.Tokens.body(issued), accounts.settings,
                                       cookie=data.transport == "cookie")

    @bp.post("/v1/auth/mfa/webauthn/options")
    @public
    @validate_request(schemas.MfaTokenRequest)
    @document_response(schemas.PublicKeyOptions, 200)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 409)
    async def login_passkey_options(data: schemas.MfaTokenRequest) -> dict[str, Any]:
        """Options for ``navigator.credentials.get`` to finish a login with a passkey."""
        return await flows.login_passkey_options(accounts, data.mfa_token)

    @bp.post("/v1/auth/mfa/webauthn")
    @public
    @validate_request(schemas.MfaCredentialRequest)
    @document_response(schemas.Tokens, 200)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 429)
    async def login_with_passkey(data: schemas.MfaCredentialRequest) -> Response:
        """Finish a login with a passkey's answer to those options."""
        issued = await flows.login_with_passkey(accounts, mfa_token=data.mfa_token,
                                                credential=data.credential, ip=ip(),
                                                user_agent=user_agent(request))
        return browser.tokens_response(schemas.Tokens.body(issued), accounts.settings,
                                       cookie=data.transport == "cookie")

    @bp.post("/v1/auth/passkey/options")
    @public
    @document_response(schemas.PublicKeyOptions, 200)
    @document_response(schemas.Error, 429)
    async def passkey_login_options() -> dict[str, Any]:
        """Options for a passwordless login with any passkey of this site."""
        return await flows.passkey_login_options(accounts, ip=ip())

    @bp.post("/v1/auth/passkey")
    @public
    @validate_request(schemas.PasskeyLoginRequest)
    @document_response(schemas.Tokens, 200)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 429)
    async def passkey_login(data: schemas.PasskeyLoginRequest) -> Response:
        """Log in with a passkey alone (it must verify the user: PIN or biometric)."""
        issued = await flows.passkey_login(accounts, credential=data.credential, ip=ip(),
                                           user_agent=user_agent(request))
        return browser.tokens_response(schemas.Tokens.body(issued), accounts.settings,
                                       cookie=data.transport == "cookie")

    # ------------------------------------------------------------------ step-up

    @bp.post("/v1/auth/reauthenticate/options")
    @requires(USER)
    @document_response(schemas.PublicKeyOptions, 200)
    @document_response(schemas.Error, 409)
    async def reauthentication_options() -> dict[str, Any]:
        """Options to reauthenticate with a passkey."""
        return await flows.reauthentication_options(accounts, g.principal)

    @bp.post("/v1/auth/reauthenticate")
    @requires(USER)
    @validate_request(schemas.ReauthenticateRequest)
    @document_response(schemas.AccessToken, 200)
    @document_response(schemas.Error, 400)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 429)
    async def reauthenticate(data: schemas.ReauthenticateRequest) -> dict[str, Any]:
        """Prove again who you are (one of ``password``, ``code`` or ``credential``); a
        fresh access token for this session. With a second factor enrolled, step-up needs
        a code or a passkey."""
        token, expires_in = await flows.reauthenticate(
            accounts, g.principal, password=data.password, code=data.code,
            credential=data.credential, ip=ip())
        return {"access_token": token, "token_type": "Bearer",
                "expires_in": expires_in}

    return bp
