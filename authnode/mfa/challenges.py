"""What a second-factor login keeps between its requests, in Redis (shared by instances).

* The ``mfa_token`` of a login whose password was right: random, kept by its SHA-256 for
  ``MFA_TOKEN_TTL_S``, with the user and the methods used so far. It is not a bearer
  token: only ``/v1/auth/mfa*`` read it. Wrong codes count against it; at
  ``MAX_MFA_ATTEMPTS`` it answers "locked" until it expires. Finishing the login takes it
  atomically (a Lua script), so of two requests finishing one token, one wins.
* The TOTP steps already used, per user: ``SET NX`` with a lifetime covering the drift
  window, so a code is accepted once across every instance.
* WebAuthn challenges: stored with what they are for, taken with ``GETDEL`` (single use).

Redis errors become :class:`~authnode.errors.Unavailable` (503): failing closed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from authnode.clients.redis import RedisClient, redis_unavailable
from authnode.mfa.totp import DRIFT_STEPS, STEP_S
from authnode.shared import redis_keys

MFA_TOKEN_TTL_S = 300
MAX_MFA_ATTEMPTS = 5
WEBAUTHN_CHALLENGE_TTL_S = 300
# A used step stays refused while its code could still be accepted (drift on both sides).
TOTP_USED_TTL_S = STEP_S * (2 * DRIFT_STEPS + 2)

# KEYS[1] the pending login: written with its lifetime in one step (never without one).
_START_LUA = """
redis.call('HSET', KEYS[1], 'login', ARGV[1], 'attempts', 0)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] the pending login. Returns its JSON and deletes it, unless it is locked.
_TAKE_LUA = """
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[1]) then return {-1, false} end
local login = redis.call('HGET', KEYS[1], 'login')
if not login then return {0, false} end
redis.call('DEL', KEYS[1])
return {1, login}
"""

# KEYS[1] the pending login. Counts a wrong code; returns the count (0: no such login).
_FAIL_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
"""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PendingLogin:
    user_id: str
    amr: tuple[str, ...]  # methods passed so far, e.g. ("pwd",)

    def to_json(self) -> str:
        return json.dumps({"user_id": self.user_id, "amr": list(self.amr)})

    @classmethod
    def from_json(cls, text: bytes | str) -> PendingLogin:
        data: dict[str, Any] = json.loads(text)
        return cls(user_id=str(data["user_id"]), amr=tuple(str(m) for m in data["amr"]))


class LoginState:
    """``MfaChallenges.peek``/``take`` answers: the login, or why there is none."""

    UNKNOWN = "unknown"  # never issued, expired, or already finished
    LOCKED = "locked"  # too many wrong codes


class MfaChallenges:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._start = redis.register_script(_START_LUA)
        self._take = redis.register_script(_TAKE_LUA)
        self._fail = redis.register_script(_FAIL_LUA)

    # ------------------------------------------------------------------ pending logins

    async def start_login(self, login: PendingLogin) -> str:
        token = secrets.token_urlsafe(32)
        key = redis_keys.mfa_pending(_digest(token))
        async with redis_unavailable():
            await self._start(keys=[key], args=[login.to_json(), MFA_TOKEN_TTL_S])
        return token

    async def peek(self, token: str) -> PendingLogin | str:
        """The login waiting on ``token``, or :class:`LoginState` ``UNKNOWN``/``LOCKED``."""
        key = redis_keys.mfa_pending(_digest(token))
        async with redis_unavailable():
            login, attempts = await self._redis.hmget(key, ["login", "attempts"])
        if login is None:
            return LoginState.UNKNOWN
        if int(attempts or 0) >= MAX_MFA_ATTEMPTS:
            return LoginState.LOCKED
        return PendingLogin.from_json(login)

    async def record_failure(self, token: str) -> int:
        """Count a wrong code; returns the attempts so far (0 if the login is gone)."""
        key = redis_keys.mfa_pending(_digest(token))
        async with redis_unavailable():
            count = await self._fail(keys=[key])
        return int(count)

    async def take(self, token: str) -> PendingLogin | str:
        """Finish the login: returns it and forgets the token, atomically (one winner)."""
        key = redis_keys.mfa_pending(_digest(token))
        async with redis_unavailable():
            status, login = await self._take(keys=[key], args=[MAX_MFA_ATTEMPTS])
        if int(status) == -1:
            return LoginState.LOCKED
        if int(status) == 0 or login is None:
            return LoginState.UNKNOWN
        return PendingLogin.from_json(login)

    # ------------------------------------------------------------------ TOTP replay

    async def claim_totp_step(self, user_id: str, step: int) -> bool:
        """True the first time this user's code of ``step`` is used; False after."""
        async with redis_unavailable():
            created = await self._redis.set(redis_keys.totp_used(user_id, step), b"1",
                                            nx=True, ex=TOTP_USED_TTL_S)
        return bool(created)

    # ------------------------------------------------------------------ WebAuthn

    async def put_challenge(self, challenge: bytes, purpose: dict[str, Any]) -> None:
        key = redis_keys.webauthn_challenge(hashlib.sha256(challenge).hexdigest())
        async with redis_unavailable():
            await self._redis.set(key, json.dumps(purpose).encode("utf-8"),
                                  ex=WEBAUTHN_CHALLENGE_TTL_S)

    async def take_challenge(self, challenge: bytes) -> dict[str, Any] | None:
        """What the challenge was handed out for; None if unknown, expired or used."""
        key = redis_keys.webauthn_challenge(hashlib.sha256(challenge).hexdigest())
        async with redis_unavailable():
            raw = await self._redis.getdel(key)
        if raw is None:
            return None
        purpose: dict[str, Any] = json.loads(raw)
        return purpose
