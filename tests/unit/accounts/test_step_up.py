"""Step-up rules on the in-memory stores, with a fake clock: when an access token's
assurance is enough for the routes declared ``recent`` or ``step_up``."""

from __future__ import annotations

import dataclasses

import pytest

from authnode.accounts.models import Principal
from authnode.errors import ReauthenticationRequired
from authnode.mfa.flows import require_step_up
from authnode.repositories.records import SecondFactors
from authnode.tokens.access import Assurance
from tests.unit.accounts._twins import Twins, twins

USER_ID = "u" * 32


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


def _principal(env: Twins, *, aal: int, age_s: float | None) -> Principal:
    auth_time = None if age_s is None else int(env.clock() - age_s)
    return Principal(user_id=USER_ID, session_id="s1",
                     assurance=Assurance(amr=("pwd",) if aal == 1 else ("pwd", "otp"),
                                         aal=aal, auth_time=auth_time))


async def _enroll(env: Twins) -> None:
    assert await env.accounts.mfa.factors.replace(SecondFactors(
        user_id=USER_ID, version=1, totp_sealed=b"sealed", recovery=("h",)))


async def _refused(env: Twins, principal: Principal, *, always_recent: bool = False) -> bool:
    try:
        await require_step_up(env.accounts, principal, always_recent=always_recent)
    except ReauthenticationRequired:
        return True
    return False


@pytest.mark.anyio
async def test_without_a_second_factor_only_recent_routes_look_at_the_time() -> None:
    env = await twins(REAUTH_MAX_AGE_S="300")
    assert not await _refused(env, _principal(env, aal=1, age_s=3600))
    assert not await _refused(env, _principal(env, aal=1, age_s=299), always_recent=True)
    assert await _refused(env, _principal(env, aal=1, age_s=301), always_recent=True)
    assert await _refused(env, _principal(env, aal=1, age_s=None), always_recent=True), \
        "a token from before auth_time existed is never recent"


@pytest.mark.anyio
async def test_with_a_second_factor_step_up_needs_aal2_and_a_recent_authentication() -> None:
    env = await twins(REAUTH_MAX_AGE_S="300")
    await _enroll(env)
    assert await _refused(env, _principal(env, aal=1, age_s=0)), "a password is not enough"
    assert not await _refused(env, _principal(env, aal=2, age_s=10))
    assert await _refused(env, _principal(env, aal=2, age_s=301))
    fresh = _principal(env, aal=2, age_s=0)
    env.clock.advance(301)
    assert await _refused(env, fresh), "the same token, five minutes later"


@pytest.mark.anyio
async def test_a_removed_factor_lifts_the_requirement() -> None:
    env = await twins()
    await _enroll(env)
    factors = await env.accounts.mfa.factors.get(USER_ID)
    assert factors is not None
    assert await env.accounts.mfa.factors.replace(dataclasses.replace(
        factors, version=2, totp_sealed=None, recovery=()))
    assert not await _refused(env, _principal(env, aal=1, age_s=3600))
