"""Second-factor flows: enrolment, finishing a login, passwordless passkeys, step-up.

A user's factors live in one record (:class:`~authnode.repositories.records.SecondFactors`)
changed by read-modify-write under a version check (:func:`_change`). Codes are checked
against the account's MFA lockout first (``MFA_FAILURE_LIMIT``, all logins together, the
attempt reserved before the check like a password's), so neither a stream of fresh
``mfa_token``s nor concurrent requests buy more guesses. A TOTP step is accepted once per
user (Redis), a recovery code once (a spend guard, then removed from the record).

Step-up: with a second factor enrolled, changing the password, deleting the account and
changing factors need an access token at AAL2 whose authentication is at most
``REAUTH_MAX_AGE_S`` old (:func:`require_step_up`); ``POST /v1/auth/reauthenticate``
renews it. Starting a TOTP enrolment or a passkey registration always needs a recent
authentication. Routes declare this (``@requires(USER, step_up=True)``, ``recent=True``)
and the access hook enforces it before the flow runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable
from typing import Any

from authnode.accounts.authentication import (
    assurance_of,
    check_password,
    start_session,
)
from authnode.accounts.context import Accounts
from authnode.accounts.models import IssuedTokens, Principal, iso
from authnode.accounts.outbox import EmailKind
from authnode.errors import (
    AccountDisabled,
    AccountLocked,
    Conflict,
    EmailNotVerified,
    InvalidCode,
    InvalidCredentials,
    InvalidRequest,
    InvalidToken,
    NotFound,
    RateLimited,
    ReauthenticationRequired,
    Unavailable,
)
from authnode.mfa import passkeys, totp
from authnode.mfa.challenges import MAX_MFA_ATTEMPTS, LoginState, PendingLogin
from authnode.mfa.passkeys import PasskeyError
from authnode.mfa.recovery_codes import new_codes
from authnode.repositories.records import Passkey, SecondFactors, User
from authnode.tokens.access import Assurance
from authnode.tokens.sealing import SealedSecretError

log = logging.getLogger(__name__)

PENDING_TOTP_S = 600  # an enrolment not confirmed within this is started again
MAX_PASSKEYS = 10
MAX_PASSKEY_NAME_CHARS = 64
_CHANGE_TRIES = 5
_AMR_ORDER = ("pwd", "ext", "otp", "hwk")  # "ext": a provider sign-in (authnode/oidc)


def _amr(*methods: str) -> tuple[str, ...]:
    return tuple(m for m in _AMR_ORDER if m in methods)


# --------------------------------------------------------------------------- the record


async def factors_of(accounts: Accounts, user_id: str) -> SecondFactors:
    return await accounts.mfa.factors.get(user_id) or SecondFactors(user_id=user_id)


async def _change(accounts: Accounts, user_id: str,
                  change: Callable[[SecondFactors], SecondFactors]) -> SecondFactors:
    """Apply ``change`` to the stored record under its version; retried on a conflict.
    ``change`` may raise to refuse. The cached profile (it shows the factors) is dropped
    first, as every profile write does."""
    await accounts.profiles.invalidate(user_id)
    for _ in range(_CHANGE_TRIES):
        current = await factors_of(accounts, user_id)
        updated = dataclasses.replace(change(current), version=current.version + 1)
        if await accounts.mfa.factors.replace(updated):
            return updated
    raise Unavailable("mongodb", "Too many changes at once; try again.")


def summary(factors: SecondFactors | None) -> dict[str, Any]:
    """``mfa`` in ``GET /v1/users/me``."""
    if factors is None:
        return {"totp": False, "webauthn": 0, "recovery_codes_left": 0}
    return {"totp": factors.totp_sealed is not None, "webauthn": len(factors.passkeys),
            "recovery_codes_left": len(factors.recovery)}


# --------------------------------------------------------------------------- step-up


def is_recent(accounts: Accounts, assurance: Assurance) -> bool:
    return (assurance.auth_time is not None
            and accounts.clock() - assurance.auth_time <= accounts.settings.reauth_max_age_s)


async def require_step_up(accounts: Accounts, principal: Principal, *,
                          always_recent: bool = False) -> SecondFactors:
    """Refuse (403 ``reauthentication_required``) unless the token is at AAL2 with a recent
    authentication when the user has a second factor; ``always_recent``: a recent
    authentication is needed even without one."""
    factors = await factors_of(accounts, principal.user_id)
    if factors.enrolled and principal.assurance.aal < 2:
        raise ReauthenticationRequired()
    if (factors.enrolled or always_recent) and not is_recent(accounts, principal.assurance):
        raise ReauthenticationRequired()
    return factors


# --------------------------------------------------------------------------- codes


async def _reserve_code_attempt(accounts: Accounts, user_id: str) -> None:
    limit = accounts.settings.mfa_failure_limit
    reserved = await accounts.limiter.reserve_attempt(f"mfa:{user_id}", "any",
                                                      per_client=limit, total=limit)
    if not reserved.allowed:
        raise AccountLocked(reserved.retry_after_s,
                            "Too many wrong codes for this account; try again later.")


async def _verify_code(accounts: Accounts, factors: SecondFactors, raw_code: str) -> str:
    """The method a right code is of (``totp`` or ``recovery_code``), spending it; raises
    :class:`InvalidCode` otherwise. Counted against the account's MFA lockout."""
    user_id = factors.user_id
    await _reserve_code_attempt(accounts, user_id)
    method = await _spend_code(accounts, factors, raw_code)
    await accounts.limiter.release_attempt(f"mfa:{user_id}", "any")
    return method


async def _spend_code(accounts: Accounts, factors: SecondFactors, raw_code: str) -> str:
    mfa = accounts.mfa
    if factors.totp_sealed is not None and totp.normalize_code(raw_code) is not None:
        step = totp.matching_step(_open_seed(accounts, factors.totp_sealed), raw_code,
                                  accounts.clock())
        if step is not None:
            if not await mfa.challenges.claim_totp_step(factors.user_id, step):
                raise InvalidCode("This code was already used; wait for the next one.")
            return "totp"
    match = next((h for h in mfa.recovery.candidates(raw_code) if h in factors.recovery), None)
    if match is None:
        raise InvalidCode()
    if not await mfa.guards.claim(f"recovery:{factors.user_id}:{match}", accounts.now()):
        raise InvalidCode()

    def spend(current: SecondFactors) -> SecondFactors:
        return dataclasses.replace(current,
                                   recovery=tuple(h for h in current.recovery if h != match))

    left = await _change(accounts, factors.user_id, spend)
    await _notify(accounts, factors.user_id, EmailKind.RECOVERY_CODE_USED)
    accounts.audit.record("mfa.recovery_code_used", user_id=factors.user_id,
                          outcome=f"{len(left.recovery)} left")
    log.info("recovery code used", extra={"user_id": factors.user_id,
                                          "outcome": f"{len(left.recovery)} left"})
    return "recovery_code"


def _open_seed(accounts: Accounts, sealed: bytes) -> str:
    try:
        return accounts.mfa.seeds.open(sealed)
    except SealedSecretError:
        # Sealed under a SECRET_KEY no longer configured: no code can match it.
        log.error("a TOTP seed no longer opens; was SECRET_KEY replaced without "
                  "SECRET_KEY_PREVIOUS?")
        raise InvalidCode() from None


async def _notify(accounts: Accounts, user_id: str, kind: EmailKind) -> None:
    user = await accounts.users.by_id(user_id)
    if user is not None:
        await accounts.outbox.request(kind, email=user.email, user_id=user.id)


async def _user(accounts: Accounts, user_id: str) -> User:
    user = await accounts.users.by_id(user_id)
    if user is None:
        raise InvalidToken()
    return user


# --------------------------------------------------------------------------- TOTP


async def start_totp(accounts: Accounts, principal: Principal) -> totp.Provisioning:
    factors = await factors_of(accounts, principal.user_id)
    if factors.totp_sealed is not None:
        raise Conflict("totp_enabled", "TOTP is already enabled; remove it first.")
    user = await _user(accounts, principal.user_id)
    secret = totp.new_secret()
    sealed = accounts.mfa.seeds.seal(secret)
    now = accounts.now()
    await _change(accounts, user.id, lambda current: dataclasses.replace(
        current, totp_pending_sealed=sealed, totp_pending_at=now))
    return totp.provisioning(secret, account=user.email, issuer=accounts.mfa.issuer)


async def confirm_totp(accounts: Accounts, principal: Principal, code: str) -> list[str]:
    """Enable the pending TOTP with a code from the app; returns fresh recovery codes."""
    factors = await factors_of(accounts, principal.user_id)
    pending, pending_at = factors.totp_pending_sealed, factors.totp_pending_at
    if factors.totp_sealed is not None:
        raise Conflict("totp_enabled", "TOTP is already enabled.")
    if (pending is None or pending_at is None
            or (accounts.now() - pending_at).total_seconds() > PENDING_TOTP_S):
        raise Conflict("no_totp_enrolment", "Start the enrolment with POST /v1/mfa/totp.")
    await _reserve_code_attempt(accounts, principal.user_id)
    step = totp.matching_step(_open_seed(accounts, pending), code, accounts.clock())
    if step is None or not await accounts.mfa.challenges.claim_totp_step(principal.user_id,
                                                                          step):
        raise InvalidCode()
    await accounts.limiter.release_attempt(f"mfa:{principal.user_id}", "any")
    codes = new_codes()
    hashes = tuple(accounts.mfa.recovery.hash(c) for c in codes)
    now = accounts.now()

    def enable(current: SecondFactors) -> SecondFactors:
        if current.totp_pending_sealed != pending:
            raise Conflict("no_totp_enrolment", "The enrolment changed meanwhile; start again.")
        return dataclasses.replace(current, totp_sealed=pending, totp_enabled_at=now,
                                   totp_pending_sealed=None, totp_pending_at=None,
                                   recovery=hashes)

    await _change(accounts, principal.user_id, enable)
    await _notify(accounts, principal.user_id, EmailKind.SECOND_FACTOR_ADDED)
    accounts.audit.record("mfa.factor_added", user_id=principal.user_id, outcome="totp")
    return codes


async def disable_totp(accounts: Accounts, principal: Principal, code: str) -> None:
    factors = await factors_of(accounts, principal.user_id)
    if factors.totp_sealed is None:
        raise NotFound("TOTP is not enabled.")
    await _verify_code(accounts, factors, code)

    def disable(current: SecondFactors) -> SecondFactors:
        return _without_orphan_codes(dataclasses.replace(
            current, totp_sealed=None, totp_enabled_at=None))

    await _change(accounts, principal.user_id, disable)
    await _notify(accounts, principal.user_id, EmailKind.SECOND_FACTOR_REMOVED)
    accounts.audit.record("mfa.factor_removed", user_id=principal.user_id, outcome="totp")


def _without_orphan_codes(factors: SecondFactors) -> SecondFactors:
    """Recovery codes stand in for a second factor; with none left they go too."""
    return factors if factors.enrolled else dataclasses.replace(factors, recovery=())


async def new_recovery_codes(accounts: Accounts, principal: Principal, code: str) -> list[str]:
    factors = await factors_of(accounts, principal.user_id)
    if not factors.enrolled:
        raise Conflict("no_second_factor", "Enable a second factor first.")
    await _verify_code(accounts, factors, code)
    codes = new_codes()
    hashes = tuple(accounts.mfa.recovery.hash(c) for c in codes)
    await _change(accounts, principal.user_id,
                  lambda current: dataclasses.replace(current, recovery=hashes))
    return codes


# --------------------------------------------------------------------------- finishing a login


async def _pending(accounts: Accounts, mfa_token: str) -> PendingLogin:
    found = await accounts.mfa.challenges.peek(mfa_token)
    if found == LoginState.LOCKED:
        raise RateLimited(60, "Too many wrong codes for this login; log in again.")
    if not isinstance(found, PendingLogin):
        raise InvalidToken("The mfa_token is unknown, expired or already used.")
    return found


async def _count_failure(accounts: Accounts, mfa_token: str, error: Exception) -> Exception:
    """The error to answer after a wrong code: 429 once the login has used its attempts."""
    pending = await accounts.mfa.challenges.peek(mfa_token)
    accounts.audit.record("mfa.failed", user_id=pending.user_id
                          if isinstance(pending, PendingLogin) else None)
    if await accounts.mfa.challenges.record_failure(mfa_token) >= MAX_MFA_ATTEMPTS:
        return RateLimited(60, "Too many wrong codes for this login; log in again.")
    return error


async def _finish(accounts: Accounts, mfa_token: str, pending: PendingLogin,
                  method: str, *, ip: str, user_agent: str) -> IssuedTokens:
    taken = await accounts.mfa.challenges.take(mfa_token)
    if taken != pending:  # another request finished (or locked) this login meanwhile
        raise InvalidToken("The mfa_token is unknown, expired or already used.")
    user = await _login_user(accounts, pending.user_id)
    accounts.audit.record("mfa.passed", user_id=user.id, outcome=method)
    accounts.audit.record("login.succeeded", user_id=user.id,
                          outcome="+".join(_amr(*pending.amr, method)))
    return await start_session(accounts, user, ip=ip, user_agent=user_agent,
                               amr=_amr(*pending.amr, method))


async def _login_user(accounts: Accounts, user_id: str) -> User:
    user = await accounts.users.by_id(user_id)
    if user is None:
        raise InvalidToken()
    if user.disabled:
        raise AccountDisabled()
    if not user.email_verified:
        raise EmailNotVerified()
    return user


async def login_with_code(accounts: Accounts, *, mfa_token: str, code: str, ip: str,
                          user_agent: str) -> IssuedTokens:
    pending = await _pending(accounts, mfa_token)
    factors = await factors_of(accounts, pending.user_id)
    try:
        await _verify_code(accounts, factors, code)
    except InvalidCode as error:
        raise await _count_failure(accounts, mfa_token, error) from None
    return await _finish(accounts, mfa_token, pending, "otp", ip=ip, user_agent=user_agent)


def _challenge_digest(mfa_token: str) -> str:
    return hashlib.sha256(mfa_token.encode("utf-8")).hexdigest()


async def _options_for_own_passkeys(accounts: Accounts, user_id: str,
                                    purpose: dict[str, Any]) -> dict[str, Any]:
    """Request options allowing the user's passkeys; the challenge is kept for ``purpose``."""
    factors = await factors_of(accounts, user_id)
    if not factors.passkeys:
        raise Conflict("no_passkey", "This account has no passkey.")
    options = passkeys.authentication_options(accounts.mfa.relying_party,
                                              allowed=[p.id for p in factors.passkeys])
    await accounts.mfa.challenges.put_challenge(options.challenge, purpose)
    return options.public_key


async def login_passkey_options(accounts: Accounts, mfa_token: str) -> dict[str, Any]:
    pending = await _pending(accounts, mfa_token)
    return await _options_for_own_passkeys(accounts, pending.user_id, {
        "purpose": "mfa", "user_id": pending.user_id, "login": _challenge_digest(mfa_token)})


async def login_with_passkey(accounts: Accounts, *, mfa_token: str, credential: object,
                             ip: str, user_agent: str) -> IssuedTokens:
    pending = await _pending(accounts, mfa_token)
    try:
        await _check_passkey(accounts, pending.user_id, credential, {
            "purpose": "mfa", "user_id": pending.user_id,
            "login": _challenge_digest(mfa_token)}, require_user_verification=False)
    except InvalidCode as error:
        raise await _count_failure(accounts, mfa_token, error) from None
    return await _finish(accounts, mfa_token, pending, "hwk", ip=ip, user_agent=user_agent)


async def _check_passkey(accounts: Accounts, user_id: str, credential: object,
                         purpose: dict[str, Any], *, require_user_verification: bool) -> None:
    """Verify an assertion of one of ``user_id``'s passkeys against a challenge handed out
    for ``purpose`` (taken: single use), and record its new sign counter."""
    mfa = accounts.mfa
    try:
        challenge = passkeys.challenge_of(credential)
        credential_id = passkeys.credential_id_of(credential)
    except PasskeyError as error:
        raise InvalidCode(str(error)) from None
    if await mfa.challenges.take_challenge(challenge) != purpose:
        raise InvalidCode("The challenge is unknown, expired, already used or not this "
                          "login's; ask for new options.")
    passkey = (await factors_of(accounts, user_id)).passkey(credential_id)
    if passkey is None:
        raise InvalidCode("This passkey is not registered to this account.")
    try:
        count = passkeys.verify_authentication(
            mfa.relying_party, credential, challenge, public_key=passkey.public_key,
            sign_count=passkey.sign_count,
            require_user_verification=require_user_verification)
    except PasskeyError as error:
        log.warning("passkey assertion refused", extra={"user_id": user_id,
                                                        "outcome": str(error)[:200]})
        raise InvalidCode("The passkey's answer does not verify.") from None
    now = accounts.now()

    def used(current: SecondFactors) -> SecondFactors:
        return dataclasses.replace(current, passkeys=tuple(
            dataclasses.replace(p, sign_count=max(p.sign_count, count), last_used_at=now)
            if p.id == credential_id else p for p in current.passkeys))

    await _change(accounts, user_id, used)


# --------------------------------------------------------------------------- passwordless


async def passkey_login_options(accounts: Accounts, *, ip: str) -> dict[str, Any]:
    await accounts.limiter.check("login_ip", ip, accounts.settings.login_ip_limit)
    options = passkeys.authentication_options(accounts.mfa.relying_party, allowed=None)
    await accounts.mfa.challenges.put_challenge(options.challenge, {"purpose": "passkey"})
    return options.public_key


async def passkey_login(accounts: Accounts, *, credential: object, ip: str,
                        user_agent: str) -> IssuedTokens:
    """Log in with a discoverable passkey alone: it must have verified the user."""
    await accounts.limiter.check("login_ip", ip, accounts.settings.login_ip_limit)
    try:
        user_id = passkeys.user_handle_of(credential)
    except PasskeyError:
        user_id = None
    if user_id is None:
        raise InvalidCredentials("The passkey is not known here.")
    try:
        await _check_passkey(accounts, user_id, credential, {"purpose": "passkey"},
                             require_user_verification=True)
    except InvalidCode:
        raise InvalidCredentials("The passkey is not known here or did not verify.") from None
    user = await _login_user(accounts, user_id)
    accounts.audit.record("login.succeeded", user_id=user.id, outcome="hwk")
    return await start_session(accounts, user, ip=ip, user_agent=user_agent, amr=("hwk",))


# --------------------------------------------------------------------------- passkeys


def _passkey_view(passkey: Passkey) -> dict[str, Any]:
    return {"id": passkey.id, "name": passkey.name, "created_at": iso(passkey.created_at),
            "last_used_at": iso(passkey.last_used_at)}


def _clean_passkey_name(raw: str | None) -> str:
    name = unicodedata.normalize("NFC", raw or "").strip() or "Passkey"
    if len(name) > MAX_PASSKEY_NAME_CHARS:
        raise InvalidRequest(f"name: expected at most {MAX_PASSKEY_NAME_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name):
        raise InvalidRequest("name: control characters are not allowed")
    return name


async def passkey_registration_options(accounts: Accounts,
                                       principal: Principal) -> dict[str, Any]:
    factors = await factors_of(accounts, principal.user_id)
    if len(factors.passkeys) >= MAX_PASSKEYS:
        raise Conflict("too_many_passkeys",
                       f"An account may have {MAX_PASSKEYS} passkeys; remove one first.")
    user = await _user(accounts, principal.user_id)
    options = passkeys.registration_options(
        accounts.mfa.relying_party, user_id=user.id, user_name=user.email,
        existing=[p.id for p in factors.passkeys])
    await accounts.mfa.challenges.put_challenge(options.challenge, {
        "purpose": "register", "user_id": user.id, "session_id": principal.session_id})
    return options.public_key


async def register_passkey(accounts: Accounts, principal: Principal, *, credential: object,
                           name: str | None) -> dict[str, Any]:
    label = _clean_passkey_name(name)
    mfa = accounts.mfa
    try:
        challenge = passkeys.challenge_of(credential)
    except PasskeyError as error:
        raise InvalidCode(str(error)) from None
    purpose = {"purpose": "register", "user_id": principal.user_id,
               "session_id": principal.session_id}
    if await mfa.challenges.take_challenge(challenge) != purpose:
        raise InvalidCode("The challenge is unknown, expired, already used or not this "
                          "session's; ask for new options.")
    try:
        created = passkeys.verify_registration(mfa.relying_party, credential, challenge)
    except PasskeyError as error:
        raise InvalidCode(str(error)) from None
    passkey = Passkey(id=created.credential_id, public_key=created.public_key,
                      sign_count=created.sign_count, name=label, created_at=accounts.now())

    def add(current: SecondFactors) -> SecondFactors:
        if current.passkey(passkey.id) is not None:
            raise Conflict("passkey_exists", "This passkey is registered already.")
        if len(current.passkeys) >= MAX_PASSKEYS:
            raise Conflict("too_many_passkeys", f"An account may have {MAX_PASSKEYS} "
                                                "passkeys; remove one first.")
        return dataclasses.replace(current, passkeys=(*current.passkeys, passkey))

    await _change(accounts, principal.user_id, add)
    await _notify(accounts, principal.user_id, EmailKind.SECOND_FACTOR_ADDED)
    accounts.audit.record("mfa.factor_added", user_id=principal.user_id, outcome="webauthn")
    return _passkey_view(passkey)


async def list_passkeys(accounts: Accounts, principal: Principal) -> list[dict[str, Any]]:
    factors = await factors_of(accounts, principal.user_id)
    return [_passkey_view(p) for p in factors.passkeys]


async def delete_passkey(accounts: Accounts, principal: Principal, passkey_id: str) -> None:
    factors = await factors_of(accounts, principal.user_id)
    if factors.passkey(passkey_id) is None:
        raise NotFound("No such passkey.")

    def remove(current: SecondFactors) -> SecondFactors:
        return _without_orphan_codes(dataclasses.replace(
            current, passkeys=tuple(p for p in current.passkeys if p.id != passkey_id)))

    await _change(accounts, principal.user_id, remove)
    await _notify(accounts, principal.user_id, EmailKind.SECOND_FACTOR_REMOVED)
    accounts.audit.record("mfa.factor_removed", user_id=principal.user_id,
                          outcome="webauthn")


# --------------------------------------------------------------------------- reauthentication


async def reauthentication_options(accounts: Accounts, principal: Principal) -> dict[str, Any]:
    return await _options_for_own_passkeys(accounts, principal.user_id, {
        "purpose": "reauth", "user_id": principal.user_id,
        "session_id": principal.session_id})


async def reauthenticate(accounts: Accounts, principal: Principal, *, password: str | None,
                         code: str | None, credential: object | None,
                         ip: str) -> tuple[str, int]:
    """Prove again who the session's user is; a fresh access token for the same session
    (the refresh token is unchanged). A password alone proves one factor: with a second
    factor enrolled, step-up needs a code or a passkey."""
    given = [x for x in (password, code, credential) if x is not None]
    if len(given) != 1:
        raise InvalidRequest("Give one of password, code or credential.")
    session = await accounts.sessions.by_id(principal.session_id)
    if session is None or session.revoked_at is not None:
        raise InvalidToken()
    user = await _user(accounts, principal.user_id)
    amr: tuple[str, ...]
    if password is not None:
        if not await check_password(accounts, user, password, ip=ip):
            raise InvalidCredentials("The password is incorrect.")
        amr = ("pwd",)
    elif code is not None:
        await _verify_code(accounts, await factors_of(accounts, user.id), code)
        amr = _amr(*session.amr, "otp")
    else:
        await _check_passkey(accounts, user.id, credential, {
            "purpose": "reauth", "user_id": user.id, "session_id": principal.session_id},
            require_user_verification=False)
        amr = _amr(*session.amr, "hwk")
    now = accounts.now()
    if not await accounts.sessions.reauthenticated(session.id, user.id, amr, now):
        raise InvalidToken()
    return await accounts.access_tokens.issue(user.id, session.id, assurance_of(amr, now))


# --------------------------------------------------------------------------- support


async def reset(accounts: Accounts, user_id: str, *, by: str) -> bool:
    """Remove every second factor of an account (support, after checking who asks).
    Recorded in the log; the user is emailed. False if there was nothing to remove."""
    await accounts.profiles.invalidate(user_id)
    removed = await accounts.mfa.factors.delete(user_id)
    log.warning("second factors reset", extra={"user_id": user_id, "outcome": by,
                                               "removed": removed, "at": time.time()})
    if removed:
        await _notify(accounts, user_id, EmailKind.SECOND_FACTOR_REMOVED)
    accounts.audit.record("mfa.reset", user_id=user_id,
                          outcome="removed" if removed else "none")
    return removed
