"""Logging in, refreshing, logging out, and checking a bearer token.

Login for an unknown address verifies the password against a dummy hash, so it takes as
long as a wrong password for a known one. Every password check is reserved against the
account's lockout first (per client address, and per account across all addresses; see
:mod:`authnode.shared.ratelimit`), shared by every instance through Redis.

Refresh tokens rotate on every use (one caller claims the token, then one update whose
filter holds the current hash; see repositories/sessions). The token just replaced,
presented again within ``REFRESH_REUSE_GRACE_S``, is a concurrent refresh from the same
client and gets the same successor (see :mod:`authnode.tokens.refresh`); presented later,
or any older token of the session presented at all, it was stolen or replayed, and the
whole session ends. A refresh is also refused for a session that a logout, a password
change, or disabling or deleting the account meant to end even if that request failed
halfway (its Redis mark, or the user's revocation cutoff later than the session's last
proof of the password). A refresh does not read the user from MongoDB: the cutoff, the
mark and the cached profile come from one Redis ``MGET``.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

import anyio

from authnode.accounts.context import Accounts
from authnode.accounts.models import IssuedTokens, Principal, lookup_email, public_user
from authnode.errors import (
    AccountDisabled,
    AccountLocked,
    EmailNotVerified,
    InvalidCredentials,
    InvalidToken,
    MfaRequired,
    Unavailable,
)
from authnode.mfa.challenges import PendingLogin
from authnode.repositories.records import Session, User
from authnode.shared.revocations import RefreshGate
from authnode.tokens.access import Assurance
from authnode.tokens.refresh import (
    hash_refresh_token,
    hashes_equal,
    new_refresh_token,
    parse_refresh_token,
    successor_token,
)

log = logging.getLogger(__name__)

MAX_USER_AGENT_CHARS = 256
ROTATION_WAIT_S = 1.0


async def login(accounts: Accounts, *, email: str, password: str, ip: str,
                user_agent: str) -> IssuedTokens:
    address = lookup_email(email)
    # Its own script: this key counts the address on every account, so it cannot share an
    # account's Redis Cluster slot (see authnode.shared.ratelimit).
    await accounts.limiter.check("login_ip", ip, accounts.settings.login_ip_limit)
    try:
        await _reserve_attempt(accounts, address, ip)
    except AccountLocked:
        # The same lookup as any login's, so a locked answer takes no different time.
        locked = await accounts.users.by_email(address)
        accounts.audit.record("login.locked", user_id=locked.id if locked else None,
                              outcome="refused")
        raise
    user = await accounts.users.by_email(address)
    if user is None:
        await accounts.hasher.verify_dummy(password)
        accounts.audit.record("login.failed", user_id=None, outcome="unknown_address")
        raise InvalidCredentials()
    if not user.has_password:  # made by a provider sign-in: the same answer and time
        await accounts.hasher.verify_dummy(password)
        accounts.audit.record("login.failed", user_id=user.id, outcome="no_password")
        raise InvalidCredentials()
    if not await accounts.hasher.verify(user.password_hash, password):
        accounts.audit.record("login.failed", user_id=user.id, outcome="wrong_password")
        raise InvalidCredentials()
    await accounts.limiter.release_attempt(address, ip)
    if not user.email_verified:
        raise EmailNotVerified()
    if user.disabled:
        accounts.audit.record("login.failed", user_id=user.id, outcome="disabled")
        raise AccountDisabled()
    if accounts.hasher.needs_rehash(user.password_hash):
        new_hash = await accounts.hasher.hash(password)
        await accounts.users.rehash_password(user.id, user.password_hash, new_hash)
    factors = await accounts.mfa.factors.get(user.id)
    if factors is not None and factors.enrolled:
        token = await accounts.mfa.challenges.start_login(
            PendingLogin(user_id=user.id, amr=("pwd",)))
        accounts.audit.record("login.mfa_required", user_id=user.id)
        raise MfaRequired(token, factors.methods)
    accounts.audit.record("login.succeeded", user_id=user.id, outcome="pwd")
    return await start_session(accounts, user, ip=ip, user_agent=user_agent)


async def check_password(accounts: Accounts, user: User, password: str, *,
                         ip: str) -> bool:
    """Whether ``password`` is the user's, counted against the account's lockout as a
    login from ``ip`` is (:class:`AccountLocked` while it is locked for ``ip``)."""
    await _reserve_attempt(accounts, user.email, ip)
    if not user.has_password:
        await accounts.hasher.verify_dummy(password)
        return False
    if not await accounts.hasher.verify(user.password_hash, password):
        return False
    await accounts.limiter.release_attempt(user.email, ip)
    return True


async def _reserve_attempt(accounts: Accounts, address: str, ip: str) -> None:
    """Count the attempt as a failure before its password is checked, so concurrent
    guesses cannot all get a check; a right password releases it."""
    settings = accounts.settings
    reserved = await accounts.limiter.reserve_attempt(
        address, ip, per_client=settings.login_account_limit,
        total=settings.login_account_total_limit)
    if not reserved.allowed:
        raise AccountLocked(reserved.retry_after_s)


def assurance_of(amr: tuple[str, ...], authenticated_at: datetime) -> Assurance:
    """Two different methods, or a passkey (it verified the user), are AAL2."""
    aal = 2 if len(set(amr)) >= 2 or "hwk" in amr else 1
    return Assurance(amr=amr, aal=aal, auth_time=int(authenticated_at.timestamp()))


async def start_session(accounts: Accounts, user: User, *, ip: str, user_agent: str,
                        amr: tuple[str, ...] = ("pwd",)) -> IssuedTokens:
    now = accounts.now()
    session_id = secrets.token_urlsafe(18)
    refresh_token = new_refresh_token(session_id)
    await accounts.sessions.insert(Session(
        id=session_id, user_id=user.id, refresh_hash=hash_refresh_token(refresh_token),
        previous_hash=None, rotation_nonce=None, rotated_at=None, spent=(),
        created_at=now, last_used_at=now,
        expires_at=now + timedelta(seconds=accounts.settings.refresh_token_ttl_s),
        user_agent=user_agent[:MAX_USER_AGENT_CHARS], ip=ip, revoked_at=None, amr=amr,
    ))
    access_token, expires_in = await accounts.access_tokens.issue(
        user.id, session_id, assurance_of(amr, now))
    return IssuedTokens(access_token, expires_in, refresh_token, public_user(user))


async def refresh(accounts: Accounts, *, refresh_token: str, ip: str) -> IssuedTokens:
    await accounts.limiter.check("refresh_ip", ip, accounts.settings.refresh_ip_limit)
    session_id = parse_refresh_token(refresh_token)
    presented_hash = hash_refresh_token(refresh_token)
    now = accounts.now()
    nonce = secrets.token_urlsafe(32)
    successor = successor_token(refresh_token, nonce, accounts.refresh_key, session_id)
    session = replayed = None
    owner = await accounts.sessions.claim_rotation(session_id, presented_hash, now)
    if owner is None:
        replayed = await _after_concurrent_rotation(accounts, session_id, presented_hash)
        # Still the live token: the request that claimed it failed (a 503) or died before
        # its update, and the client is retrying. Rotate it now rather than log them out.
        if replayed is not None and _is_live(replayed, presented_hash):
            owner = replayed.user_id
    if owner is not None:
        # Before the token is spent, so that a Redis failure here leaves it for a retry.
        gate = await _read_gate(accounts, owner, session_id)
        session = await accounts.sessions.rotate(
            session_id, presented_hash, new_hash=hash_refresh_token(successor), nonce=nonce,
            now=now)
        replayed = None if session else await accounts.sessions.by_id(session_id,
                                                                       with_spent=True)
    if session is None:
        successor = await _replayed(accounts, replayed, refresh_token, presented_hash)
        session = replayed
        assert session is not None  # _replayed raised otherwise
        gate = await _read_gate(accounts, session.user_id, session_id)
    if gate.refuses(session.credentials_at or session.created_at):
        # A password change, a disabling or a deletion meant to end this session (the
        # user's cutoff is later than its last proof of the password); finish what it
        # could not.
        await accounts.sessions.revoke(session_id, accounts.now())
        raise InvalidToken()
    user = await _refreshing_user(accounts, session.user_id, gate.profile_entry)
    access_token, expires_in = await accounts.access_tokens.issue(
        session.user_id, session_id, assurance_of(session.amr, session.authenticated_at))
    return IssuedTokens(access_token, expires_in, successor, user)


async def _read_gate(accounts: Accounts, user_id: str, session_id: str) -> RefreshGate:
    """The session's Redis mark, the user's cutoff and cached profile, in one round trip.
    A marked session is refused, and its revocation finished: a logout or logout-all
    marked it but its MongoDB revocation did not happen."""
    gate = await accounts.revocations.refresh_gate(
        user_id, session_id, also=accounts.profiles.key(user_id))
    if gate.session_marked:
        await accounts.sessions.revoke(session_id, accounts.now())
        raise InvalidToken()
    return gate


async def _refreshing_user(accounts: Accounts, user_id: str,
                           entry: bytes | None) -> dict[str, Any]:
    """The user's public profile: the cache entry the gate read, when there is one;
    otherwise the user, read from the primary (one read, as before the cache was used
    here; the cache's own loader would also read the second factors). A deleted or
    disabled user is refused; a disabled one is refused by the gate's cutoff already."""
    profile = accounts.profiles.cached(entry)
    if profile is None:
        user = await accounts.users.by_id(user_id)
        if user is None or user.disabled:
            raise InvalidToken()
        profile = public_user(user)
    return profile


async def _after_concurrent_rotation(accounts: Accounts, session_id: str,
                                     presented_hash: str) -> Session | None:
    """The session once the request that claimed this token has rotated it (or after
    ``ROTATION_WAIT_S``, if that request died between its claim and its update)."""
    deadline = time.monotonic() + ROTATION_WAIT_S
    while True:
        session = await accounts.sessions.by_id(session_id, with_spent=True)
        if not _is_live(session, presented_hash) or time.monotonic() >= deadline:
            return session
        await anyio.sleep(0.005)


def _is_live(session: Session | None, presented_hash: str) -> bool:
    return (session is not None and session.revoked_at is None
            and hashes_equal(session.refresh_hash, presented_hash))


async def _replayed(accounts: Accounts, session: Session | None, refresh_token: str,
                    presented_hash: str) -> str:
    """The presented token is not the live one: a concurrent refresh or a replay."""
    now = accounts.now()
    if session is None or session.revoked_at is not None or session.expires_at <= now:
        raise InvalidToken()
    previous = session.previous_hash
    if previous and hashes_equal(previous, presented_hash):
        grace = timedelta(seconds=accounts.settings.refresh_reuse_grace_s)
        # A session with a previous hash was rotated: it has a nonce and a time.
        assert session.rotated_at is not None and session.rotation_nonce is not None
        if now - session.rotated_at <= grace:
            return successor_token(refresh_token, session.rotation_nonce,
                                   accounts.refresh_key, session.id)
    elif not session.spent_earlier(presented_hash):
        raise InvalidToken()  # never a token of this session
    log.warning("refresh token reuse detected; session revoked",
                extra={"user_id": session.user_id, "session_id": session.id})
    accounts.audit.record("refresh.reuse_detected", user_id=session.user_id,
                          outcome="session ended")
    await end_session(accounts, session.user_id, session.id)
    raise InvalidToken()


async def end_session(accounts: Accounts, user_id: str, session_id: str) -> bool:
    """End one session everywhere at once; False if it was not the user's or not live.

    The Redis mark comes first, and is written again when the session is already revoked
    in MongoDB: a logout retried after a failure (or after Redis lost the mark) must not
    answer as done while the access token still works. The mark is pending until MongoDB
    has revoked the session: if that write fails, the mark refuses the session's refreshes
    for as long as its refresh token could live (:func:`_read_gate`)."""
    session = await accounts.sessions.by_id(session_id)
    if session is None or session.user_id != user_id:
        return False
    await accounts.revocations.revoke_sessions(user_id, [session_id], pending=True)
    ended = await accounts.sessions.revoke(session_id, accounts.now(), user_id=user_id)
    await _settle(accounts, user_id, [session_id])
    accounts.audit.record("session.ended", user_id=user_id)
    return ended


async def _settle(accounts: Accounts, user_id: str, session_ids: list[str]) -> None:
    try:
        await accounts.revocations.settle_sessions(user_id, session_ids)
    except Unavailable:
        log.warning("could not shorten session marks; they expire later",
                    extra={"user_id": user_id})


async def end_all_sessions(accounts: Accounts, user_id: str, *,
                           except_session: str | None = None) -> None:
    now = accounts.now()
    marks_live_s = accounts.revocations.mark_ttl_s
    doomed = [sid for sid in await accounts.sessions.ids_to_mark(
        user_id, now, now - timedelta(seconds=marks_live_s)) if sid != except_session]
    # Mark first: if Redis is down this raises before anything changes. Sessions revoked
    # within a mark's lifetime are marked again, so a retry restores lost marks.
    await accounts.revocations.revoke_sessions(user_id, doomed, pending=True)
    await accounts.sessions.revoke_all(user_id, now, except_session=except_session)
    await _settle(accounts, user_id, doomed)
    accounts.audit.record("sessions.ended_all", user_id=user_id,
                          outcome=f"{len(doomed)} session(s)")


async def authenticate(accounts: Accounts, bearer: str, *,
                       read_profile: bool = False) -> Principal:
    """The principal of a valid, unrevoked bearer token. ``read_profile``: also read the
    user's profile-cache entry, in the same Redis round trip (see :func:`profile.me`)."""
    claims = await accounts.access_tokens.verify(bearer)
    also = [accounts.profiles.key(claims.sub)] if read_profile else []
    revoked, values = await accounts.revocations.is_revoked_reading(
        claims.sub, claims.sid, claims.iat, also=also)
    if revoked:
        raise InvalidToken()
    entry = values[0] if read_profile else None
    return Principal(user_id=claims.sub, session_id=claims.sid, assurance=claims.assurance,
                     profile_entry=(entry if isinstance(entry, bytes) else None,)
                     if read_profile else None)
