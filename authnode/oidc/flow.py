"""The provider sign-in: start, callback, the app's code exchange, and linking.

**Start** keeps the sign-in in Redis under the SHA-256 of its ``state`` for
``STATE_TTL_S`` (10 minutes): the provider, a ``nonce``, the PKCE verifier (S256), where
to go afterwards and in which flavour, and the hash of a key the starting browser keeps
in a cookie. **Callback** takes it with ``GETDEL``: one callback per state, so of two
racing callbacks with one state exactly one goes on, and a replay is refused; without the
starting browser's cookie it goes no further (a callback URL sent to a victim signs them
in as no one: login CSRF). It exchanges the code (client secret, verifier), checks the ID token
(:mod:`authnode.oidc.idtoken`) and decides who signs in:

* a linked identity (provider, ``sub``) signs in as its user; one whose user was deleted
  is unlinked and counts as new (the same ``sub`` never reaches a new account holder);
* a new identity whose provider says the address is verified, and no account has that
  address: a new account without a password (``NO_PASSWORD``), email verified;
* a new identity whose verified address belongs to an account: **not** linked. A link
  token (``LINK_TTL_S``) waits until the account's owner proves it is theirs
  (:meth:`Oidc.confirm_link` with the password, :meth:`Oidc.email_link` and
  :meth:`Oidc.confirm_emailed_link` with the mailbox; neither for an account with a second
  factor) or signs in and links it;
* an address the provider does not call verified matches and creates nothing (403).

A sign-in by a provider is recorded like a password login (a session with ``amr``
``["ext"]``, the login metric, ``login.succeeded`` with outcome ``oidc:<provider>``),
and, as after a password, a user with a second factor gets ``mfa_required``: the
provider counts as one factor, like a password.

The app flavour never puts tokens in a URL: the callback redirects to ``return_to`` with
a one-time ``code`` (``CODE_TTL_S``) that the app exchanges for the tokens body (with its
own PKCE verifier when it sent a challenge at start).

A signed-in user's link (:meth:`Oidc.start` with ``link_user_id``) ends in a ``link_code``
that only that user's token finishes (:meth:`Oidc.confirm_own_link`): a forwarded link URL
links the forwardee's provider account to nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx

from authnode.accounts.authentication import check_password, start_session
from authnode.accounts.context import Accounts
from authnode.accounts.models import IssuedTokens, Principal, clean_name, lookup_email
from authnode.accounts.outbox import EmailKind
from authnode.accounts.registration import email_token_hash
from authnode.clients.redis import RedisClient, redis_unavailable
from authnode.errors import (
    AccountDisabled,
    InvalidCredentials,
    InvalidRequest,
    MfaRequired,
    NotFound,
)
from authnode.mfa.challenges import PendingLogin
from authnode.oidc.discovery import ProviderDirectory, ProviderMetadata
from authnode.oidc.errors import (
    CodeExchangeFailed,
    IdentityInUse,
    InvalidLink,
    InvalidState,
    LastSignInMethod,
    LinkRequired,
    ProviderEmailNotVerified,
    ProviderError,
    ProviderUnavailable,
    SignInToLink,
    UnknownProvider,
)
from authnode.oidc.idtoken import UnknownKey, validate_id_token, verified_email
from authnode.repositories.records import NO_PASSWORD, Identity, User, new_user_id
from authnode.settings import OidcProvider, Settings
from authnode.shared import redis_keys

log = logging.getLogger(__name__)

STATE_TTL_S = 600
CODE_TTL_S = 60
LINK_TTL_S = 600
UNLINK_LOCK_S = 10
LINK_CODE_TTL_S = 300
OWN_LINK = "own"  # a link code of a signed-in user's link (not a link_required token)
RESOLVE_TRIES = 3
CREATION_WAIT_S = 2.0  # the most an account's two inserts take, but for a crash
DANGLING_AFTER = timedelta(minutes=1)  # an identity this old without its user: stale
AMR = ("ext",)  # RFC 8176 has no "federated": "ext" is our documented value
MAX_NAME_CHARS = 100


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def s256(verifier: str) -> str:
    """PKCE's S256 (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def redirect_uri(settings: Settings, provider: OidcProvider) -> str:
    return f"{settings.public_origin}/v1/auth/oidc/{provider.name}/callback"


@dataclass(frozen=True)
class Started:
    authorization_url: str
    state: str
    # The browser that started the sign-in keeps this (a cookie); the callback wants it
    # back, so a callback URL sent to someone else signs no one in (login CSRF).
    browser_key: str | None


def browser_cookie_name(state: str) -> str:
    """One cookie per sign-in, so two tabs signing in at once do not collide."""
    return "authnode_oidc_" + _digest(state)[:12]


@dataclass(frozen=True)
class SignedIn:
    """The callback's outcome. ``code``: the one-time code for the app (always made
    unless the page flavour finished with tokens); ``tokens``: the page flavour's."""

    return_to: str
    mode: str
    code: str | None = None
    tokens: IssuedTokens | None = None
    link_code: str | None = None  # a signed-in user's link, to confirm with their token


def _display_name(raw: object) -> str | None:
    """The provider's ``name`` as a profile name if it is a usable one (else none): the
    same rules as a name a user types (no control characters, 100 at most)."""
    if not isinstance(raw, str):
        return None
    try:
        return clean_name(raw[:MAX_NAME_CHARS])
    except InvalidRequest:
        return None


class Oidc:
    def __init__(self, accounts: Accounts, redis: RedisClient, http: httpx.AsyncClient,
                 directory: ProviderDirectory | None = None) -> None:
        self.accounts = accounts
        self.settings = accounts.settings
        self._redis = redis
        self._http = http
        self.directory = directory or ProviderDirectory(redis, http, clock=accounts.clock)

    def provider(self, name: str) -> OidcProvider:
        found = self.settings.oidc_provider(name)
        if found is None:
            raise UnknownProvider()
        return found

    # ------------------------------------------------------------------ start

    async def start(self, name: str, *, return_to: str, mode: str,
                    link_user_id: str | None = None,
                    app_challenge: str | None = None) -> Started:
        """``return_to``: absolute, already allowed (the route checks it).
        ``app_challenge``: the app's own PKCE S256 challenge for the one-time code."""
        provider = self.provider(name)
        target = return_to
        metadata = await self.directory.metadata(provider)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)
        browser_key = None if link_user_id else secrets.token_urlsafe(32)
        challenge = s256(verifier)
        pending = {"provider": provider.name, "nonce": nonce, "verifier": verifier,
                   "return_to": target, "mode": mode, "link_user_id": link_user_id,
                   "browser": _digest(browser_key) if browser_key else None,
                   "app_challenge": app_challenge}
        async with redis_unavailable():
            await self._redis.set(redis_keys.oidc_state(_digest(state)),
                                  json.dumps(pending).encode("utf-8"), ex=STATE_TTL_S)
        query = urlencode({
            "response_type": "code", "client_id": provider.client_id,
            "redirect_uri": redirect_uri(self.settings, provider),
            "scope": " ".join(provider.scopes), "state": state, "nonce": nonce,
            "code_challenge": challenge, "code_challenge_method": "S256"})
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return Started(f"{metadata.authorization_endpoint}{separator}{query}", state,
                       browser_key)

    # ------------------------------------------------------------------ callback

    async def callback(self, name: str, *, state: str | None, code: str | None,
                       error: str | None, browser_key: str | None, ip: str,
                       user_agent: str) -> SignedIn:
        provider = self.provider(name)
        if not state or len(state) > 512:
            raise InvalidState()
        async with redis_unavailable():
            raw = await self._redis.getdel(redis_keys.oidc_state(_digest(state)))
        if raw is None:
            raise InvalidState()
        pending: dict[str, Any] = json.loads(raw)
        if pending["provider"] != provider.name:
            raise InvalidState("The sign-in was started with another provider.")
        expected = pending.get("browser")
        if expected is not None and not (browser_key and hmac.compare_digest(
                _digest(browser_key).encode(), str(expected).encode())):
            raise InvalidState("The sign-in was started in another browser (or its cookie "
                               "was lost); start it again here.")
        if error:
            raise ProviderError(f"The provider answered {error[:64]!r}.")
        if not code or len(code) > 2048:
            raise ProviderError("The provider sent no authorization code.")
        metadata = await self.directory.metadata(provider)
        id_token = await self._exchange(provider, metadata, code, pending["verifier"])
        claims = await self._validate(provider, metadata, id_token, pending["nonce"])
        return_to, mode = pending["return_to"], pending["mode"]
        if pending.get("link_user_id"):
            link = {"provider": provider.name, "subject": claims["sub"],
                    "email": claims.get("email") if isinstance(claims.get("email"), str)
                    else None, "user_id": pending["link_user_id"], "kind": OWN_LINK}
            link_code = secrets.token_urlsafe(32)
            async with redis_unavailable():
                await self._redis.set(redis_keys.oidc_link(_digest(link_code)),
                                      json.dumps(link).encode("utf-8"), ex=LINK_CODE_TTL_S)
            return SignedIn(return_to=return_to, mode=mode, link_code=link_code)
        outcome = await self._resolve(provider, claims)
        if mode == "page" and isinstance(outcome, User):
            factors = await self.accounts.mfa.factors.get(outcome.id)
            if factors is None or not factors.enrolled:
                tokens = await self._session(outcome, provider, ip=ip, user_agent=user_agent)
                return SignedIn(return_to=return_to, mode=mode, tokens=tokens)
        code_value = secrets.token_urlsafe(32)
        stored = {"ip": ip, "user_agent": user_agent, "provider": provider.name,
                  "app_challenge": pending.get("app_challenge"),
                  "user_id": outcome.id if isinstance(outcome, User) else None,
                  "link": outcome if isinstance(outcome, dict) else None}
        async with redis_unavailable():
            await self._redis.set(redis_keys.oidc_code(_digest(code_value)),
                                  json.dumps(stored).encode("utf-8"), ex=CODE_TTL_S)
        return SignedIn(return_to=return_to, mode=mode, code=code_value)

    async def _exchange(self, provider: OidcProvider, metadata: ProviderMetadata,
                        code: str, verifier: str) -> str:
        # client_secret_basic: each part form-encoded first (RFC 6749 2.3.1).
        auth = httpx.BasicAuth(urlencode({"": provider.client_id})[1:],
                               urlencode({"": provider.client_secret.reveal()})[1:])
        try:
            response = await self._http.post(metadata.token_endpoint, auth=auth, data={
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri(self.settings, provider),
                "code_verifier": verifier}, headers={"Accept": "application/json"})
        except httpx.HTTPError:
            raise ProviderUnavailable(provider.name) from None
        if response.status_code >= 500:
            raise ProviderUnavailable(provider.name, f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            reason = body.get("error") if isinstance(body, dict) else None
            raise CodeExchangeFailed("The provider refused the authorization code"
                                     + (f" ({str(reason)[:64]})." if reason else "."))
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise CodeExchangeFailed("The provider's answer has no ID token.")
        return id_token

    async def _validate(self, provider: OidcProvider, metadata: ProviderMetadata,
                        id_token: str, nonce: str) -> dict[str, Any]:
        arguments = {"issuer": provider.issuer, "client_id": provider.client_id,
                     "nonce": nonce, "algorithms": metadata.algorithms}
        jwks = await self.directory.jwks(provider, metadata)
        try:
            return validate_id_token(id_token, jwks=jwks, now=self.accounts.clock(),
                                     **arguments)  # type: ignore[arg-type]
        except UnknownKey:
            jwks = await self.directory.jwks(provider, metadata, refetch=True)
            return validate_id_token(id_token, jwks=jwks, now=self.accounts.clock(),
                                     **arguments)  # type: ignore[arg-type]

    async def _resolve(self, provider: OidcProvider,
                       claims: dict[str, Any]) -> User | dict[str, Any]:
        """The user this identity signs in as, or the link waiting for confirmation.

        A new account claims the identity first, then its address (each one insert that
        exactly one caller wins), so concurrent first sign-ins of one identity make one
        account, and a sign-in that finds the address taken re-reads the identity before
        it asks for a link (the account may be this identity's, in the making)."""
        accounts = self.accounts
        subject: str = claims["sub"]
        for _ in range(RESOLVE_TRIES):
            identity = await accounts.identities.by_subject(provider.name, subject)
            if identity is not None:
                user = await self._user_of(identity)
                if user is not None:
                    if user.disabled:
                        raise AccountDisabled()
                    return user
                # Its account was deleted (and the identity with it, unless that failed).
                await accounts.identities.delete(identity.user_id, identity.id)
            email = verified_email(claims)
            if email is None:
                accounts.audit.record("login.failed", user_id=None,
                                      outcome=f"oidc:{provider.name}:email_not_verified")
                raise ProviderEmailNotVerified()
            address = lookup_email(email)
            existing = await accounts.users.by_email(address)
            if existing is not None:
                again = await accounts.identities.by_subject(provider.name, subject)
                if again is not None and again.user_id == existing.id:
                    return existing
                return {"provider": provider.name, "subject": subject,
                        "email": existing.email, "user_id": existing.id}
            created = await self._create_account(provider, subject, address, claims)
            if created is not None:
                return created
        raise InvalidState("The sign-in raced another one; start it again.")

    async def _user_of(self, identity: Identity) -> User | None:
        """The identity's user; None if it is gone (a deletion that failed halfway). A
        young identity without its user is an account being made: wait for it."""
        deadline = time.monotonic() + CREATION_WAIT_S
        while True:
            user = await self.accounts.users.by_id(identity.user_id)
            if user is not None or self.accounts.now() - identity.created_at > DANGLING_AFTER:
                return user
            if time.monotonic() >= deadline:
                raise InvalidState("The sign-in raced another one; start it again.")
            await anyio.sleep(0.02)

    async def _create_account(self, provider: OidcProvider, subject: str, address: str,
                              claims: dict[str, Any]) -> User | None:
        """A new password-less account for this identity; None if another caller claimed
        the identity or the address first (the caller looks again)."""
        accounts = self.accounts
        now = accounts.now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        user = User(id=new_user_id(), email=address, name=_display_name(claims.get("name")),
                    password_hash=NO_PASSWORD, email_verified=True, disabled=False,
                    credential_version=1, created_at=now, updated_at=now)
        identity = Identity(provider=provider.name, subject=subject, user_id=user.id,
                            email=address, created_at=now)
        if not await accounts.identities.insert(identity):
            return None
        try:
            created = await accounts.users.create(user, now)
        except BaseException:
            await accounts.identities.delete(user.id, identity.id)
            raise
        if not created:
            await accounts.identities.delete(user.id, identity.id)
            return None
        await accounts.registrations.delete_for_email(address)
        accounts.audit.record("user.created", user_id=user.id, outcome=f"oidc:{provider.name}")
        accounts.audit.record("identity.linked", user_id=user.id, outcome=provider.name)
        return user

    async def _link_signed_in(self, provider: OidcProvider, claims: dict[str, Any],
                              user_id: str) -> None:
        accounts = self.accounts
        if await accounts.users.by_id(user_id) is None:
            raise InvalidState("The account that started this link no longer exists.")
        email = claims.get("email")
        linked = await accounts.identities.insert(Identity(
            provider=provider.name, subject=claims["sub"], user_id=user_id,
            email=email if isinstance(email, str) else None, created_at=accounts.now()))
        if not linked:
            identity = await accounts.identities.by_subject(provider.name, claims["sub"])
            if identity is None or identity.user_id != user_id:
                raise IdentityInUse()
            return  # already theirs
        accounts.audit.record("identity.linked", user_id=user_id, outcome=provider.name)

    async def _session(self, user: User, provider: OidcProvider, *, ip: str,
                       user_agent: str) -> IssuedTokens:
        """Sign ``user`` in: ``mfa_required`` first if they have a second factor."""
        accounts = self.accounts
        factors = await accounts.mfa.factors.get(user.id)
        if factors is not None and factors.enrolled:
            token = await accounts.mfa.challenges.start_login(
                PendingLogin(user_id=user.id, amr=AMR))
            accounts.audit.record("login.mfa_required", user_id=user.id,
                                  outcome=f"oidc:{provider.name}")
            raise MfaRequired(token, factors.methods)
        accounts.audit.record("login.succeeded", user_id=user.id,
                              outcome=f"oidc:{provider.name}")
        return await start_session(accounts, user, ip=ip, user_agent=user_agent, amr=AMR)

    # ------------------------------------------------------------------ the app's exchange

    async def exchange(self, code: str, code_verifier: str | None = None) -> IssuedTokens:
        """The one-time code's sign-in: tokens, or ``mfa_required``, or ``link_required``.
        A code whose start carried the app's ``code_challenge`` needs its verifier (a
        code read from a URL by someone else is worth nothing); a wrong one leaves the
        code for its app."""
        key = redis_keys.oidc_code(_digest(code))
        async with redis_unavailable():
            peeked = await self._redis.get(key)
        if peeked is None:
            raise InvalidLink()
        challenge = json.loads(peeked).get("app_challenge")
        if challenge is not None and not (code_verifier and hmac.compare_digest(
                s256(code_verifier).encode(), str(challenge).encode())):
            raise InvalidLink("The code_verifier does not match the start's code_challenge.")
        async with redis_unavailable():
            raw = await self._redis.getdel(key)
        if raw is None:
            raise InvalidLink()
        stored: dict[str, Any] = json.loads(raw)
        provider = self.provider(stored["provider"])
        if stored.get("link"):
            raise await self._link_required(stored["link"])
        user = await self.accounts.users.by_id(stored["user_id"])
        if user is None:
            raise InvalidLink()
        if user.disabled:
            raise AccountDisabled()
        return await self._session(user, provider, ip=stored["ip"],
                                   user_agent=stored["user_agent"])

    async def _link_required(self, link: dict[str, Any]) -> LinkRequired:
        token = secrets.token_urlsafe(32)
        async with redis_unavailable():
            await self._redis.set(redis_keys.oidc_link(_digest(token)),
                                  json.dumps(link).encode("utf-8"), ex=LINK_TTL_S)
        user = await self.accounts.users.by_id(link["user_id"])
        factors = await self.accounts.mfa.factors.get(link["user_id"])
        with_password = user is not None and user.has_password and not (
            factors is not None and factors.enrolled)
        methods = ["password"] if with_password else []
        if not (factors is not None and factors.enrolled):
            methods.append("email")
        methods.append("sign_in_and_link")
        self.accounts.audit.record("identity.link_required", user_id=link["user_id"],
                                   outcome=link["provider"])
        return LinkRequired(token, link["provider"], link["email"], methods)

    # ------------------------------------------------------------------ linking

    async def confirm_link(self, *, link_token: str, password: str, ip: str,
                           user_agent: str) -> IssuedTokens:
        """The owner proves the account with its password; then the identity is linked
        and they are signed in. A wrong password counts against the account's lockout and
        keeps the link token. An account with a second factor is not linked on a password
        alone (403 ``sign_in_to_link``): its owner signs in fully and links from there."""
        accounts = self.accounts
        key = redis_keys.oidc_link(_digest(link_token))
        async with redis_unavailable():
            raw = await self._redis.get(key)
        if raw is None:
            raise InvalidLink()
        link: dict[str, Any] = json.loads(raw)
        if link.get("kind") == OWN_LINK:
            raise InvalidLink()
        provider = self.provider(link["provider"])
        user = await accounts.users.by_id(link["user_id"])
        if user is None:
            raise InvalidLink()
        if not user.has_password:
            await accounts.hasher.verify_dummy(password)
            raise InvalidCredentials("This account has no password: sign in to it another "
                                     "way, then link the provider from there.")
        if not await check_password(accounts, user, password, ip=ip):
            accounts.audit.record("login.failed", user_id=user.id,
                                  outcome=f"oidc:{provider.name}:link_wrong_password")
            raise InvalidCredentials("The password is incorrect.")
        factors = await accounts.mfa.factors.get(user.id)
        if factors is not None and factors.enrolled:
            raise SignInToLink()
        async with redis_unavailable():
            if await self._redis.getdel(key) is None:
                raise InvalidLink()  # a concurrent confirmation used it
        if user.disabled:
            raise AccountDisabled()
        await self._link_signed_in(provider, {"sub": link["subject"],
                                              "email": link["email"]}, user.id)
        return await self._session(user, provider, ip=ip, user_agent=user_agent)

    async def email_link(self, *, link_token: str) -> None:
        """Prove the account by its mailbox instead of its password: email its owner a
        link (``EMAIL_TOKEN_TTL``, single use) that confirms the waiting identity. Only
        the newest request of an account waits; the link token stays usable."""
        accounts = self.accounts
        async with redis_unavailable():
            raw = await self._redis.get(redis_keys.oidc_link(_digest(link_token)))
        if raw is None:
            raise InvalidLink()
        link: dict[str, Any] = json.loads(raw)
        if link.get("kind") == OWN_LINK:
            raise InvalidLink()
        user = await accounts.users.by_id(link["user_id"])
        if user is None:
            raise InvalidLink()
        async with redis_unavailable():
            await self._redis.set(redis_keys.oidc_link_by_email(user.id), raw,
                                  ex=self.settings.email_token_ttl_s)
        await accounts.outbox.request(EmailKind.LINK_IDENTITY, email=user.email,
                                      user_id=user.id)
        accounts.audit.record("identity.link_emailed", user_id=user.id,
                              outcome=link["provider"])

    async def confirm_emailed_link(self, *, token: str, ip: str,
                                   user_agent: str) -> IssuedTokens:
        """The emailed link's token: the waiting identity is linked and its holder signed
        in (as after a reset link, the mailbox is the account). Refused for an account with
        a second factor (403 ``sign_in_to_link``) before the link is spent."""
        accounts = self.accounts
        token_hash = email_token_hash(token)
        if not await accounts.email_tokens.is_usable(token_hash, EmailKind.LINK_IDENTITY,
                                                     accounts.now()):
            raise InvalidLink()
        owner = await accounts.email_tokens.owner(token_hash)
        user = await accounts.users.by_id(owner) if owner else None
        if user is None:
            raise InvalidLink()
        factors = await accounts.mfa.factors.get(user.id)
        if factors is not None and factors.enrolled:
            raise SignInToLink()
        if await accounts.email_tokens.consume(token_hash, EmailKind.LINK_IDENTITY,
                                               accounts.now()) is None:
            raise InvalidLink()
        async with redis_unavailable():
            raw = await self._redis.getdel(redis_keys.oidc_link_by_email(user.id))
        if raw is None:
            raise InvalidLink("The sign-in waiting for this link expired; sign in with the "
                              "provider again.")
        link: dict[str, Any] = json.loads(raw)
        if user.disabled:
            raise AccountDisabled()
        provider = self.provider(link["provider"])
        await self._link_signed_in(provider, {"sub": link["subject"],
                                              "email": link["email"]}, user.id)
        return await self._session(user, provider, ip=ip, user_agent=user_agent)

    async def confirm_own_link(self, principal: Principal, link_code: str) -> dict[str, Any]:
        """Finish a link a signed-in user started: the code from their callback, with
        their own token. A callback URL forwarded to someone else (whose provider account
        would otherwise be linked to the sender's account) links nothing: the code lands
        in the other person's browser, and their token is not the sender's."""
        key = redis_keys.oidc_link(_digest(link_code))
        async with redis_unavailable():
            raw = await self._redis.get(key)
        if raw is None:
            raise InvalidLink()
        link: dict[str, Any] = json.loads(raw)
        if link.get("kind") != OWN_LINK or link.get("user_id") != principal.user_id:
            raise InvalidLink()
        async with redis_unavailable():
            if await self._redis.getdel(key) is None:
                raise InvalidLink()
        provider = self.provider(link["provider"])
        await self._link_signed_in(provider, {"sub": link["subject"], "email": link["email"]},
                                   principal.user_id)
        found = await self.accounts.identities.by_subject(provider.name, link["subject"])
        assert found is not None
        return self._view(found)

    def _view(self, identity: Identity) -> dict[str, Any]:
        names = {p.name: p.display_name for p in self.settings.oidc}
        return {"id": identity.id, "provider": identity.provider,
                "display_name": names.get(identity.provider, identity.provider),
                "email": identity.email,
                "created_at": identity.created_at.isoformat().replace("+00:00", "Z")}

    async def identities(self, principal: Principal) -> list[dict[str, Any]]:
        found = await self.accounts.identities.for_user(principal.user_id)
        return [self._view(i) for i in found]

    async def unlink(self, principal: Principal, identity_id: str) -> None:
        """Remove one sign-in by a provider, unless it is the last way in (no password,
        no passwordless passkey, no other identity). One removal per user at a time."""
        accounts = self.accounts
        user_id = principal.user_id
        lock = redis_keys.oidc_unlink_lock(user_id)
        owner = secrets.token_hex(8).encode()
        async with redis_unavailable():
            if not await self._redis.set(lock, owner, nx=True, ex=UNLINK_LOCK_S):
                raise LastSignInMethod("Another change to your sign-in methods is under "
                                       "way; try again in a moment.")
        try:
            user = await accounts.users.by_id(user_id)
            mine = await accounts.identities.for_user(user_id)
            if user is None or not any(i.id == identity_id for i in mine):
                raise NotFound("No such identity of yours.")
            factors = await accounts.mfa.factors.get(user_id)
            others = len(mine) - 1 + (1 if user.has_password else 0) + \
                (1 if factors is not None and factors.passkeys else 0)
            if others < 1:
                raise LastSignInMethod()
            if await accounts.identities.delete(user_id, identity_id):
                accounts.audit.record("identity.unlinked", user_id=user_id)
        finally:
            async with redis_unavailable():
                if await self._redis.get(lock) == owner:
                    await self._redis.delete(lock)
