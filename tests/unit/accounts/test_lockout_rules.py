"""Lockout rules of the account flows, on the in-memory stores: every password check is
reserved against the account's lockout before it runs (an unknown address too), a right
password releases its reservation, and a locked account is refused without a check, for
one client address first and for every address once the account's total is reached.

The lockout counters are :class:`LockoutLimiter`'s; Redis's own are tested in
tests/integration/test_lockout_reservations.py and tests/security/test_lockout.py."""

from __future__ import annotations

import pytest

from authnode.accounts import registration
from authnode.accounts.authentication import check_password, login
from authnode.errors import AccountLocked, InvalidCredentials
from tests.unit.accounts._twins import Twins, twins

ADDRESS = "ada@example.com"
PASSWORD = "correct horse 1"
LIMITS = {"LOGIN_ACCOUNT_LIMIT": "3/15m", "LOGIN_ACCOUNT_TOTAL_LIMIT": "5/1h"}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


async def _with_account() -> Twins:
    env = await twins(**LIMITS)
    await registration.register(env.accounts, email=ADDRESS, password=PASSWORD, name=None,
                                ip="192.0.2.1")
    assert await env.deliver_all() == ["sent"]
    await registration.verify_email(env.accounts, token=env.link_tokens(ADDRESS)[-1])
    return env


async def _login(env: Twins, password: str, ip: str = "192.0.2.1") -> None:
    await login(env.accounts, email=ADDRESS, password=password, ip=ip, user_agent="test")


@pytest.mark.anyio
async def test_wrong_passwords_lock_the_account_for_that_client() -> None:
    env = await _with_account()
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await _login(env, "wrong guess 1")
    with pytest.raises(AccountLocked) as locked:
        await _login(env, PASSWORD)  # even the right one: it is not checked
    assert locked.value.retry_after_s == 15 * 60
    await _login(env, PASSWORD, ip="198.51.100.7")  # another client still may


@pytest.mark.anyio
async def test_a_right_password_does_not_count() -> None:
    env = await _with_account()
    for _ in range(5):
        await _login(env, PASSWORD)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await _login(env, "wrong guess 1")
    await _login(env, PASSWORD)
    assert env.limiter.per_client[ADDRESS, "192.0.2.1"] == 2


@pytest.mark.anyio
async def test_failures_from_every_client_add_up_to_the_accounts_total() -> None:
    env = await _with_account()
    for n in range(5):
        with pytest.raises(InvalidCredentials):
            await _login(env, "wrong guess 1", ip=f"203.0.113.{n}")
    with pytest.raises(AccountLocked):
        await _login(env, PASSWORD, ip="198.51.100.7")


@pytest.mark.anyio
async def test_an_unknown_address_counts_like_a_known_one() -> None:
    env = await twins(**LIMITS)
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await _login(env, PASSWORD)
    with pytest.raises(AccountLocked):
        await _login(env, PASSWORD)


@pytest.mark.anyio
async def test_password_checks_of_a_signed_in_user_share_the_lockout() -> None:
    env = await _with_account()
    user = await env.accounts.users.by_email(ADDRESS)
    assert user is not None
    for _ in range(3):
        assert not await check_password(env.accounts, user, "wrong guess 1", ip="192.0.2.1")
    with pytest.raises(AccountLocked):
        await check_password(env.accounts, user, PASSWORD, ip="192.0.2.1")
    with pytest.raises(AccountLocked):
        await _login(env, PASSWORD)
    assert await check_password(env.accounts, user, PASSWORD, ip="198.51.100.7")
