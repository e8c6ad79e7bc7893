"""What a provider sign-in can answer besides success; each a JSON error of its own."""

from __future__ import annotations

from authnode.errors import AuthnodeError


class UnknownProvider(AuthnodeError):
    status = 404
    code = "unknown_provider"
    default_message = "No sign-in provider of that name is configured."


class ProviderUnavailable(AuthnodeError):
    """The provider (its discovery document, keys or token endpoint) did not answer
    usefully. Only its own buttons fail: ``/readyz`` does not depend on providers."""

    status = 503
    code = "provider_unavailable"

    def __init__(self, provider: str, detail: str = "") -> None:
        super().__init__(f"The sign-in provider {provider!r} cannot be reached"
                         f"{' (' + detail + ')' if detail else ''}; try again later.")
        self.provider = provider

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "30"}


class InvalidState(AuthnodeError):
    status = 400
    code = "invalid_state"
    default_message = ("The sign-in is unknown, expired or already finished; start it "
                       "again.")


class InvalidReturnTo(AuthnodeError):
    status = 400
    code = "invalid_return_to"
    default_message = ("return_to must be a path on this service or a URL under "
                       "RETURN_URL_ALLOWLIST.")


class ProviderError(AuthnodeError):
    """The provider sent the user back with an error (they declined, for instance)."""

    status = 400
    code = "provider_error"
    default_message = "The provider did not sign you in."


class CodeExchangeFailed(AuthnodeError):
    status = 400
    code = "code_exchange_failed"
    default_message = "The provider refused the authorization code."


class InvalidIdToken(AuthnodeError):
    status = 400
    code = "invalid_id_token"
    default_message = "The provider's ID token is not valid."


class ProviderEmailNotVerified(AuthnodeError):
    status = 403
    code = "provider_email_not_verified"
    default_message = ("The provider did not say your email address is verified, so no "
                       "account can be made or matched with it. Verify it with the "
                       "provider, or sign up with a password.")


class LinkRequired(AuthnodeError):
    """The provider's verified address belongs to an account that has not linked this
    identity: its owner must prove the account is theirs first
    (``POST /v1/auth/oidc/link/confirm``), or sign in and link it from there."""

    status = 409
    code = "link_required"
    default_message = ("An account with this email address exists. Prove it is yours to "
                       "link this sign-in to it.")

    def __init__(self, link_token: str, provider: str, email: str,
                 methods: list[str]) -> None:
        super().__init__()
        self.link_token = link_token
        self.provider = provider
        self.email = email
        self.methods = methods

    def extra(self) -> dict[str, object]:
        return {"link_token": self.link_token, "provider": self.provider,
                "email": self.email, "methods": self.methods}


class SignInToLink(AuthnodeError):
    status = 403
    code = "sign_in_to_link"
    default_message = ("This account has a second factor: sign in to it (with the factor), "
                       "then link the provider from your account.")


class IdentityInUse(AuthnodeError):
    status = 409
    code = "identity_in_use"
    default_message = "That provider account is already linked to another account."


class LastSignInMethod(AuthnodeError):
    status = 409
    code = "last_sign_in_method"
    default_message = ("This is your last way to sign in; add a password (reset link) or "
                       "another sign-in first.")


class InvalidLink(AuthnodeError):
    status = 400
    code = "invalid_token"
    default_message = "The link token or code is unknown, expired or already used."
