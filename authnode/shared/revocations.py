"""Immediate logout of access tokens on every instance, through Redis.

Access tokens are stateless JWTs that live ``ACCESS_TOKEN_TTL``; to end them early every
instance consults two marks, both under the user's ``{hash tag}`` so one ``MGET`` reads
them on a single Redis and on a Redis Cluster alike:

* ``revoked_session(user, session)``: present while the access tokens of one session must
  be refused (logout of one session);
* ``revoked_before(user)``: an epoch time with sub-second precision; every session of the
  user that existed at that time is over (logout-all, password reset or change, account
  deletion or disabling).

A session mark lives ``ACCESS_TOKEN_TTL + 60`` seconds: by then every access token it could
concern has expired by itself (the 60 s absorb clock skew between instances). It is first
written *pending*, living as long as the session's refresh token could
(``REFRESH_TOKEN_TTL + 60``), and shortened (:meth:`Revocations.settle_sessions`) only once
MongoDB has revoked the session: if that write fails, the mark keeps refusing the session's
refreshes, which finish the revocation, however late the refresh comes. The cutoff always
lives ``REFRESH_TOKEN_TTL + 60``, until its writer lifts it: a refresh reads it (with the
session's mark and the cached profile, :meth:`Revocations.refresh_gate`) instead of reading
the user from MongoDB, so it is what refuses the sessions of a disabled account, or of a
password change that failed before it revoked them.

Timing of ``revoked_before`` -- what is compared with it. Access tokens carry an integer
``iat`` (whole seconds), which cannot tell a token issued at 100.3 before a revocation at
100.5 from one issued at 100.7 after it. So :meth:`Revocations.is_revoked` compares, in
order of preference:

1. ``session_created_at`` when the caller knows it (a float with sub-second precision,
   e.g. a claim of the token): the session is revoked when it was created at or before
   the revocation. This is exact, and stricter than comparing the token's issue time: a
   token that a session created before the revocation manages to obtain afterwards (a
   refresh racing with logout-all) is refused too, while a new login right after
   logout-all -- even within the same second -- works.
2. otherwise ``issued_at``: refused when ``issued_at <= before``. With an integer ``iat``
   this refuses every token issued before the revocation (including earlier in the same
   second), at the price of also refusing a token issued later in that same second (a new
   login right after logout-all gets a token that is refused until it is refreshed). With
   a float ``iat`` it is exact.

Redis errors fail closed: :class:`authnode.errors.Unavailable` (a 503), never "not
revoked" -- an auth service must not accept a possibly revoked token it cannot check.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio

from authnode.clients.redis import RedisClient, redis_unavailable
from authnode.shared import redis_keys

__all__ = ["DEFAULT_TIMEOUT_S", "MARK_EXTRA_S", "RefreshGate", "Revocations",
           "revoked_by_cutoff"]

log = logging.getLogger(__name__)

# A mark outlives the longest access token it concerns by this much (clock skew).
MARK_EXTRA_S = 60

# Upper bound of one operation, on top of the client's own socket timeouts.
DEFAULT_TIMEOUT_S = 5.0

# Keep the later of the stored and the given cutoff; (re)arm the expiry either way. The
# given value is stored verbatim (Lua's tostring would round it to 14 digits).
_REVOKE_BEFORE_LUA = """
local current = redis.call('GET', KEYS[1])
local value = ARGV[1]
if current then
  local stored = tonumber(current)
  if stored and stored >= tonumber(value) then
    value = current
  end
end
redis.call('SET', KEYS[1], value, 'EX', ARGV[2])
return value
"""

# Remove the cutoff only if it is still the one given (a later one stays in force).
_LIFT_IF_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def revoked_by_cutoff(
    before: float | None, issued_at: float, session_created_at: float | None = None
) -> bool:
    """Whether a token is refused by a user's cutoff (pure; see the module docstring)."""
    if before is None:
        return False
    moment = session_created_at if session_created_at is not None else issued_at
    return moment <= before


@dataclass(frozen=True)
class RefreshGate:
    """What a refresh reads from Redis in one ``MGET`` (:meth:`Revocations.refresh_gate`):
    the session's mark, the user's cutoff, and one more key of the user (the cached
    profile: ``None`` when absent)."""

    session_marked: bool
    cutoff: float | None
    unreadable_cutoff: bool
    profile_entry: bytes | None

    def refuses(self, proved_at: datetime) -> bool:
        """Whether the cutoff ends a session that last proved the password at
        ``proved_at`` (its creation, or its password change).

        Compared in whole milliseconds, strictly: MongoDB keeps milliseconds, and the
        session that changes the password records the cutoff itself as its proof
        (``credentials_at``), which must not refuse it."""
        if self.unreadable_cutoff:
            return True
        if self.cutoff is None:
            return False
        proved_ms = (proved_at.astimezone(UTC) - _EPOCH) // _MILLISECOND
        return bool(proved_ms < math.floor(self.cutoff * 1000))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _cutoff_text(before: float) -> str:
    value = float(before)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a finite epoch time >= 0, got {before!r}")
    return repr(value)


class Revocations:
    def __init__(
        self,
        redis: RedisClient,
        *,
        access_token_ttl_s: int,
        refresh_token_ttl_s: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if access_token_ttl_s < 1:
            raise ValueError("access_token_ttl_s must be at least 1")
        self._redis = redis
        self._timeout_s = timeout_s
        self.mark_ttl_s = access_token_ttl_s + MARK_EXTRA_S
        self.pending_mark_ttl_s = max(refresh_token_ttl_s, access_token_ttl_s) + MARK_EXTRA_S
        self._revoke_before_script = redis.register_script(_REVOKE_BEFORE_LUA)
        self._lift_if_script = redis.register_script(_LIFT_IF_LUA)

    async def revoke_session(self, user_id: str, session_id: str) -> None:
        """Refuse the access tokens of one session from now on, on every instance."""
        key = redis_keys.revoked_session(user_id, session_id)
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                await self._redis.set(key, b"1", ex=self.mark_ttl_s)

    async def revoke_sessions(self, user_id: str, session_ids: list[str], *,
                              pending: bool = False) -> None:
        """Refuse the access tokens of several sessions of one user, in one round trip
        (their keys share the user's hash tag, so this is one pipeline on one shard).
        ``pending``: the MongoDB revocation is still to come; the marks live as long as
        a refresh token could, until :meth:`settle_sessions`."""
        await self._mark(user_id, session_ids,
                         self.pending_mark_ttl_s if pending else self.mark_ttl_s)

    async def settle_sessions(self, user_id: str, session_ids: list[str]) -> None:
        """MongoDB has revoked these sessions: their marks need only outlive the access
        tokens now. A failure here leaves a mark living longer, which refuses nothing
        that should work."""
        await self._mark(user_id, session_ids, self.mark_ttl_s)

    async def _mark(self, user_id: str, session_ids: list[str], ttl_s: int) -> None:
        if not session_ids:
            return
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for session_id in session_ids:
                        pipe.set(redis_keys.revoked_session(user_id, session_id), b"1",
                                 ex=ttl_s)
                    await pipe.execute()

    async def revoke_user(self, user_id: str, before: float) -> float:
        """End every session of the user that exists at ``before`` (epoch seconds, keep
        the sub-second part: ``time.time()``). A later cutoff already stored wins.

        The cutoff lives as long as a refresh token could (``REFRESH_TOKEN_TTL + 60``),
        like a pending session mark: refreshes check it (:meth:`refresh_gate`) instead of
        reading the user from MongoDB, so it must outlive every session it ends even when
        the request that wrote it failed before revoking them one by one. Callers lift it
        (:meth:`lift_user_cutoff`) once they have.

        Returns the cutoff now in force.
        """
        key = redis_keys.revoked_before(user_id)
        text = _cutoff_text(before)
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                stored = await self._revoke_before_script(
                    keys=[key], args=[text, self.pending_mark_ttl_s])
        in_force = _parse_cutoff(stored, key)
        return float(text) if in_force is None else in_force

    async def lift_user_cutoff(self, user_id: str, *, only: float | None = None) -> None:
        """Remove the user-wide cutoff of :meth:`revoke_user` (an account enabled again,
        a password change done). Call it only once every session it covered is revoked
        one by one: the cutoff compares whole-second ``iat`` values, so left in place it
        would also refuse the tokens of a login made in the same second as the cutoff.

        ``only``: remove it only if it is still this cutoff (the caller's own), so a later
        one written meanwhile stays in force."""
        key = redis_keys.revoked_before(user_id)
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                if only is None:
                    await self._redis.delete(key)
                else:
                    await self._lift_if_script(keys=[key], args=[_cutoff_text(only)])

    async def is_session_marked(self, user_id: str, session_id: str) -> bool:
        """Whether :meth:`revoke_session` marked this session and the mark still lives
        (a refresh must not outlive a logout whose MongoDB write failed after the mark).
        Raises ``Unavailable`` when Redis cannot answer."""
        key = redis_keys.revoked_session(user_id, session_id)
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                found = await self._redis.exists(key)
        return bool(found)

    async def refresh_gate(self, user_id: str, session_id: str, *,
                           also: str) -> RefreshGate:
        """The session's mark, the user's cutoff and the value of ``also`` (a key under
        the user's hash tag), in one ``MGET``. Raises ``Unavailable`` when Redis cannot
        answer."""
        keys = [redis_keys.revoked_session(user_id, session_id),
                redis_keys.revoked_before(user_id), also]
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                session_mark, before_raw, entry = await self._redis.mget(keys)
        cutoff = None if before_raw is None else _parse_cutoff(before_raw, keys[1])
        return RefreshGate(session_marked=session_mark is not None, cutoff=cutoff,
                           unreadable_cutoff=before_raw is not None and cutoff is None,
                           profile_entry=entry if isinstance(entry, bytes) else None)

    async def is_revoked(
        self,
        user_id: str,
        session_id: str,
        issued_at: float,
        *,
        session_created_at: float | None = None,
    ) -> bool:
        """Whether an access token of this session, issued at ``issued_at`` (its ``iat``),
        must be refused. One round trip. Raises ``Unavailable`` when Redis cannot answer.
        """
        revoked, _ = await self.is_revoked_reading(
            user_id, session_id, issued_at, session_created_at=session_created_at)
        return revoked

    async def is_revoked_reading(
        self,
        user_id: str,
        session_id: str,
        issued_at: float,
        *,
        session_created_at: float | None = None,
        also: Sequence[str] = (),
    ) -> tuple[bool, list[bytes | str | None]]:
        """:meth:`is_revoked`, plus the values of ``also`` read by the same ``MGET``: keys
        under this user's hash tag (``{u:<id>}``, e.g. the cached profile), so a request
        that needs one makes one round trip to Redis instead of two."""
        keys = [redis_keys.revoked_session(user_id, session_id),
                redis_keys.revoked_before(user_id), *also]
        async with redis_unavailable():
            with anyio.fail_after(self._timeout_s):
                session_mark, before_raw, *values = await self._redis.mget(keys)
        if session_mark is not None:
            return True, values
        if before_raw is None:
            return False, values
        before = _parse_cutoff(before_raw, keys[1])
        if before is None:
            return True, values  # unreadable cutoff: fail closed until it expires
        return revoked_by_cutoff(before, issued_at, session_created_at), values


def _parse_cutoff(raw: object, key: str) -> float | None:
    """The stored cutoff, or None (logged) when it is not a finite number."""
    value = math.nan
    if isinstance(raw, bytes | bytearray | str | int | float):
        try:
            value = float(raw)
        except ValueError:
            pass
    if not math.isfinite(value):
        log.error("unreadable revocation cutoff %r in %s", raw, key)
        return None
    return value
