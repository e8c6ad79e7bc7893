"""A logout, logout-all, password change or password reset interrupted by a store failure
between its writes: the retry converges, and no old session is left alive.

Ending a session writes to two stores (a Redis mark that refuses its access tokens at once,
a MongoDB revocation that refuses its refresh token), and a password change writes a third
thing (the password). There is no transaction across them. Each scenario counts the writes
one request makes and makes the N-th fail, for every N, the way a store that goes away
fails: Redis writes raise what :mod:`authnode.shared.revocations` raises on an outage (a 503),
MongoDB writes raise pymongo's ``AutoReconnect``. The fault comes from wrappers around the
real repositories (subclasses that raise before calling the real method once), mounted on
an in-process app that shares the deployment's MongoDB and Redis; everything else is real.
Then the client does what a client does after a 503 -- retry, refreshing its access token
if it was refused -- against the real ``authnode`` binary, and the test checks what a user
would see there:

* logout and logout-all: a retry never answers 204 while the access token still works;
  afterwards the access token is refused and the refresh token too;
* password change and reset: whenever the new password is in force, the other sessions'
  access tokens and refresh tokens are refused (never the new password with an old
  session alive); a retried change or reset with a link that is still good completes.

Both Redis modes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from pymongo.errors import AutoReconnect
from quart.typing import TestClientProtocol as QuartClient

from authnode.api.app import create_app
from authnode.clients.mongo import MongoHandles
from authnode.clients.redis import RedisClient
from authnode.errors import Unavailable
from authnode.observability.metrics import Metrics
from authnode.repositories.email_tokens import EmailTokenRepository
from authnode.repositories.records import User
from authnode.repositories.sessions import SessionRepository
from authnode.repositories.users import UserRepository
from authnode.settings import load_settings
from authnode.shared import redis_keys
from authnode.shared.revocations import Revocations
from authnode.stack import open_stack
from authnode.tuning import HostResources
from tests.acceptance.conftest import authnode, authnode_env
from tests.acceptance.test_accounts_passwords import forgot
from tests.acceptance.test_accounts_support import (
    NEW_PASSWORD,
    PASSWORD,
    assert_access_refused,
    assert_refresh_refused,
    bearer,
    describe,
    login,
    register_verified,
    reset_token,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder, async_client, wait_until

__all__ = ["authnode", "authnode_env"]  # the acceptance deployment, in both Redis modes

RETRY_DEADLINE_S = 10.0


@dataclass
class Faults:
    """Counts the writes of one request; the ``fail_at``-th fails, once."""

    fail_at: int | None = None
    count: int = 0
    fired: str | None = None
    writes: list[str] = field(default_factory=list)

    def arm(self, fail_at: int) -> None:
        self.fail_at, self.count, self.fired, self.writes = fail_at, 0, None, []

    def disarm(self) -> None:
        self.fail_at = None

    def write(self, name: str, store: str) -> None:
        if self.fail_at is None:
            return
        self.count += 1
        self.writes.append(name)
        if self.count == self.fail_at:
            self.fired, self.fail_at = name, None
            if store == "redis":
                raise Unavailable("redis")
            raise AutoReconnect(f"injected: MongoDB went away before {name}")


class FlakySessions(SessionRepository):
    def __init__(self, mongo: MongoHandles, faults: Faults) -> None:
        super().__init__(mongo)
        self._faults = faults

    async def revoke(self, session_id: str, now: datetime,
                     *, user_id: str | None = None) -> bool:
        self._faults.write("sessions.revoke", "mongodb")
        return await super().revoke(session_id, now, user_id=user_id)

    async def revoke_all(self, user_id: str, now: datetime,
                         *, except_session: str | None = None) -> int:
        self._faults.write("sessions.revoke_all", "mongodb")
        return await super().revoke_all(user_id, now, except_session=except_session)

    async def confirm_credentials(self, session_id: str, user_id: str,
                                  now: datetime) -> None:
        self._faults.write("sessions.confirm_credentials", "mongodb")
        await super().confirm_credentials(session_id, user_id, now)


class FlakyUsers(UserRepository):
    def __init__(self, mongo: MongoHandles, faults: Faults) -> None:
        super().__init__(mongo)
        self._faults = faults

    async def set_password(self, user_id: str, password_hash: str, now: datetime,
                           **conditions: Any) -> User | None:
        self._faults.write("users.set_password", "mongodb")
        return await super().set_password(user_id, password_hash, now, **conditions)


class FlakyEmailTokens(EmailTokenRepository):
    def __init__(self, mongo: MongoHandles, faults: Faults) -> None:
        super().__init__(mongo)
        self._faults = faults

    async def consume(self, *args: Any, **kwargs: Any) -> Any:
        self._faults.write("email_tokens.consume", "mongodb")
        return await super().consume(*args, **kwargs)


class FlakyRevocations(Revocations):
    def __init__(self, redis: RedisClient, faults: Faults, *, access_token_ttl_s: int,
                 refresh_token_ttl_s: int) -> None:
        super().__init__(redis, access_token_ttl_s=access_token_ttl_s,
                         refresh_token_ttl_s=refresh_token_ttl_s)
        self._faults = faults

    async def revoke_session(self, user_id: str, session_id: str) -> None:
        self._faults.write("revocations.revoke_session", "redis")
        await super().revoke_session(user_id, session_id)

    async def revoke_sessions(self, user_id: str, session_ids: list[str], *,
                              pending: bool = False) -> None:
        self._faults.write("revocations.revoke_sessions", "redis")
        await super().revoke_sessions(user_id, session_ids, pending=pending)

    async def settle_sessions(self, user_id: str, session_ids: list[str]) -> None:
        self._faults.write("revocations.settle_sessions", "redis")
        await super().settle_sessions(user_id, session_ids)

    async def revoke_user(self, user_id: str, before: float) -> float:
        self._faults.write("revocations.revoke_user", "redis")
        return await super().revoke_user(user_id, before)

    async def lift_user_cutoff(self, user_id: str, **kwargs: Any) -> None:
        self._faults.write("revocations.lift_user_cutoff", "redis")
        await super().lift_user_cutoff(user_id, **kwargs)


@asynccontextmanager
async def flaky_app(env: AuthnodeEnv, faults: Faults) -> AsyncIterator[QuartClient]:
    """The API on this deployment's stores, in process, its writes passing ``faults``."""
    settings = load_settings(env.variables, host=HostResources(cpus=2, memory_bytes=4 << 30))
    async with open_stack(settings) as stack:
        users = FlakyUsers(stack.mongo, faults)
        await users.load_id_key()
        accounts = replace(
            stack.accounts, users=users, sessions=FlakySessions(stack.mongo, faults),
            email_tokens=FlakyEmailTokens(stack.mongo, faults),
            revocations=FlakyRevocations(stack.redis, faults,
                                         access_token_ttl_s=settings.access_token_ttl_s,
                                         refresh_token_ttl_s=settings.refresh_token_ttl_s))
        app = create_app(accounts, stack.keyring, stack.probes(), metrics=Metrics({}),
                         online=stack.online)
        async with app.test_app() as test_app:
            yield test_app.test_client()


# A failure here is logged and not reported: the work is done, and the cutoff or the mark
# left in force refuses too much, never too little (see accounts/recovery.py and
# end_session in accounts/authentication.py).
SWALLOWED = {"revocations.lift_user_cutoff", "revocations.settle_sessions"}


async def _fail_once(faults: Faults, fail_at: int, request: Callable[[], Any]) -> None:
    """Run the request with its ``fail_at``-th write failing: a 503."""
    faults.arm(fail_at)
    response = await request()
    faults.disarm()
    assert faults.fired is not None, \
        f"the request made only {faults.count} writes ({faults.writes}); expected more"
    expected = 204 if faults.fired in SWALLOWED else 503
    assert response.status_code == expected, (faults.fired, response.status_code,
                                              await response.get_data(as_text=True))


async def assert_no_session_outlives_its_mark(env: AuthnodeEnv,
                                              logins: list[dict[str, Any]]) -> None:
    """Before any refresh could finish the job: a session that MongoDB has not revoked
    keeps a Redis mark at least as long as its refresh token can live, so its refresh is
    refused however late it comes (a mark that expired first would let it work again)."""
    with MongoClient[dict[str, Any]](env.variables["MONGODB_URI"], tz_aware=True) as mongo:
        sessions = mongo.get_default_database()["sessions"]
        redis = async_client(env.variables["REDIS_URL"])
        try:
            for tokens in logins:
                session_id = tokens["refresh_token"].rpartition(".")[0].removeprefix("rt_")
                stored = sessions.find_one({"_id": session_id})
                assert stored is not None
                if stored.get("revoked_at") is not None:
                    continue
                left_s = (stored["expires_at"] - datetime.now(UTC)).total_seconds()
                mark_s = await redis.ttl(redis_keys.revoked_session(stored["user_id"],
                                                                     session_id))
                assert mark_s >= left_s, (f"session {session_id} is live in MongoDB for "
                                          f"{left_s:.0f} s but its mark ends in {mark_s} s")
        finally:
            await redis.aclose()


def _me(client: httpx.Client, access_token: str) -> int:
    return client.get("/v1/users/me", headers=bearer(access_token)).status_code


def _with_fresh_access(client: httpx.Client, tokens: dict[str, Any],
                       call: Callable[[str], httpx.Response]) -> httpx.Response:
    """``call(access_token)`` as a client retries: on 401 invalid_token it refreshes and
    tries again (a new token can be refused until the second of a cutoff has passed)."""
    result: list[httpx.Response] = []

    def attempt() -> bool:
        response = call(tokens["access_token"])
        if response.status_code == 401 and response.json()["error"]["code"] == "invalid_token":
            renewed = client.post("/v1/auth/refresh",
                                  json={"refresh_token": tokens["refresh_token"]})
            if renewed.status_code != 200:
                result.append(response)  # the session is over: nothing to retry with
                return True
            tokens.update(renewed.json())
            return False
        result.append(response)
        return True

    wait_until(attempt, timeout=RETRY_DEADLINE_S, interval=0.2,
               message="the retry kept being refused with a token of a live session")
    return result[0]


# Writes of each request in the current code (asserted: the fault must fire).
LOGOUT_WRITES = 3        # pending Redis mark, MongoDB revocation, mark settled
LOGOUT_ALL_WRITES = 3    # pending Redis marks, MongoDB revocations, marks settled
CHANGE_WRITES = 7        # session proves password, cutoff, password, marks, revocations,
#                          marks settled, lift
RESET_WRITES = 7         # cutoff, link spent, password, marks, revocations, marks settled,
#                          lift


@pytest.mark.anyio
@pytest.mark.parametrize("fail_at", range(1, LOGOUT_WRITES + 1))
async def test_a_retried_logout_converges(authnode: AuthnodeProcess, authnode_env: AuthnodeEnv,
                                          smtp: SmtpRecorder, fail_at: int) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp, prefix="halflogout")
    session = login(client, email)
    faults = Faults()
    async with flaky_app(authnode_env, faults) as app:
        await _fail_once(faults, fail_at, lambda: app.post(
            "/v1/auth/logout", headers=bearer(session["access_token"])))
    print(f"logout, write {fail_at} ({faults.fired}) failed")

    retry = client.post("/v1/auth/logout", headers=bearer(session["access_token"]))
    assert retry.status_code in (204, 401), describe(retry)
    await assert_no_session_outlives_its_mark(authnode_env, [session])
    assert_access_refused(client, session["access_token"],
                          f"after a retried logout that answered {retry.status_code}")
    assert_refresh_refused(client, session["refresh_token"], "after a retried logout")
    assert_access_refused(client, session["access_token"], "after the refused refresh")


@pytest.mark.anyio
@pytest.mark.parametrize("fail_at", range(1, LOGOUT_ALL_WRITES + 1))
async def test_a_retried_logout_all_converges(authnode: AuthnodeProcess,
                                              authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
                                              fail_at: int) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp, prefix="halflogoutall")
    here, there = login(client, email, user_agent="here"), login(client, email,
                                                                  user_agent="there")
    faults = Faults()
    async with flaky_app(authnode_env, faults) as app:
        await _fail_once(faults, fail_at, lambda: app.post(
            "/v1/auth/logout-all", headers=bearer(here["access_token"])))
    print(f"logout-all, write {fail_at} ({faults.fired}) failed")

    retry = _with_fresh_access(client, dict(here), lambda access: client.post(
        "/v1/auth/logout-all", headers=bearer(access)))
    assert retry.status_code in (204, 401), describe(retry)
    await assert_no_session_outlives_its_mark(authnode_env, [here, there])
    for name, tokens in (("here", here), ("there", there)):
        assert_access_refused(client, tokens["access_token"], f"{name}, after logout-all")
        assert_refresh_refused(client, tokens["refresh_token"], f"{name}, after logout-all")


def _assert_password(client: httpx.Client, email: str, in_force: str, old: str) -> None:
    refused = client.post("/v1/auth/login", json={"email": email, "password": old})
    assert refused.status_code == 401, describe(refused)
    login(client, email, in_force)


@pytest.mark.anyio
@pytest.mark.parametrize("fail_at", range(1, CHANGE_WRITES + 1))
async def test_a_retried_password_change_leaves_no_old_session(
        authnode: AuthnodeProcess, authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
        fail_at: int) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp, prefix="halfchange")
    changer, other = login(client, email, user_agent="changer"), login(client, email,
                                                                        user_agent="other")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    faults = Faults()
    async with flaky_app(authnode_env, faults) as app:
        await _fail_once(faults, fail_at, lambda: app.post(
            "/v1/auth/password/change", headers=bearer(changer["access_token"]), json=body))
    print(f"password change, write {fail_at} ({faults.fired}) failed")

    # The old session must be dead as soon as the new password is in force, before any
    # retry, whatever failed.
    if client.post("/v1/auth/login", json={"email": email,
                                           "password": NEW_PASSWORD}).status_code == 200:
        assert_access_refused(client, other["access_token"], "new password, before a retry")
        assert_refresh_refused(client, other["refresh_token"], "new password, before a retry")

    tokens = dict(changer)
    retry = _with_fresh_access(client, tokens, lambda access: client.post(
        "/v1/auth/password/change", headers=bearer(access), json=body))
    # 204: the retry did it; 401 invalid_credentials: the first attempt had already.
    assert retry.status_code in (204, 401), describe(retry)
    if retry.status_code == 401:
        assert retry.json()["error"]["code"] == "invalid_credentials", describe(retry)
    _assert_password(client, email, NEW_PASSWORD, PASSWORD)
    assert_access_refused(client, other["access_token"], "other session after the change")
    assert_refresh_refused(client, other["refresh_token"], "other session after the change")


@pytest.mark.anyio
@pytest.mark.parametrize("fail_at", range(1, RESET_WRITES + 1))
async def test_a_retried_password_reset_leaves_no_old_session(
        authnode: AuthnodeProcess, authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
        fail_at: int) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp, prefix="halfreset")
    old = login(client, email)
    forgot(client, email)
    body = {"token": reset_token(smtp, email), "password": NEW_PASSWORD}
    faults = Faults()
    async with flaky_app(authnode_env, faults) as app:
        await _fail_once(faults, fail_at, lambda: app.post("/v1/auth/password/reset",
                                                           json=body))
    print(f"password reset, write {fail_at} ({faults.fired}) failed")

    retry = client.post("/v1/auth/password/reset", json=body)
    assert retry.status_code in (204, 400), describe(retry)
    reset_done = client.post("/v1/auth/login", json={"email": email,
                                                     "password": NEW_PASSWORD})
    if retry.status_code == 204:
        assert reset_done.status_code == 200, describe(reset_done)
    if reset_done.status_code == 200:
        _assert_password(client, email, NEW_PASSWORD, PASSWORD)
        assert_access_refused(client, old["access_token"], "old session after the reset")
        assert_refresh_refused(client, old["refresh_token"], "old session after the reset")
    else:
        # The link was spent before the password write failed: the reset did not happen
        # (the user asks for a new link), and the old password still works.
        assert fail_at > 1, "a failure before anything was written must not burn the link"
        _assert_password(client, email, PASSWORD, NEW_PASSWORD)
