"""Hostile input 9: failed logins are counted across instances, and the lockout is exact.

Two API processes of the same deployment (``authnode_env.start`` twice, two ports), with
``LOGIN_ACCOUNT_LIMIT=5/12s`` (a fixed window that starts at the first failure): 3 wrong
passwords on one process and 2 on the other, all from one client address, lock the
account for that address on *both* (neither saw 5 itself), with 429 ``rate_limited`` and
a ``Retry-After`` that is the rest of the window. The lock holds for the whole window,
even for the correct password, and releases at its end: polling with the correct password
on a deadline, every answer that *finished* before the earliest possible end of the
window is 429, and the first 200 comes soon after the latest possible end (the polls,
refused, did not extend it).

Both Redis modes. The first process runs ``--role all`` only so that the registration
email gets sent (the worker plays no part in the lockout).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.acceptance.test_accounts_support import (
    PASSWORD,
    assert_error,
    describe,
    register_verified,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder

LIMIT_COUNT = 5
WINDOW_S = 12
POLL_INTERVAL_S = 0.2
# The five failures need only a fraction of a second on an idle machine; this bound only
# makes sure the window still has time left to observe the lock in, on a machine loaded
# by other tests (it checks the test's premise, not the product).
MAX_SETUP_S = WINDOW_S / 2
# Redis expires the key on time to the millisecond; the slack is for a poll delayed on a
# loaded machine. A lock extended by the refused polls would not release before the polls
# stop (the deadline catches that); this bound tells "at the end of the window" from "a
# good part of a window later", so it can be generous and keep its power.
RELEASE_SLACK_S = WINDOW_S / 3
WRONG = "definitely not the password"


def _login(process: AuthnodeProcess, email: str, password: str) -> tuple[httpx.Response,
                                                                        float, float]:
    started = time.monotonic()
    response = process.client.post("/v1/auth/login",
                                    json={"email": email, "password": password})
    return response, started, time.monotonic()


def _assert_locked(response: httpx.Response, why: str) -> int:
    assert response.status_code == 429, f"{why}: {describe(response)}"
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit() and 1 <= int(retry_after) <= WINDOW_S, \
        f"{why}: Retry-After {retry_after!r}"
    return int(retry_after)


@pytest.mark.slow
def test_failures_on_two_instances_share_one_lockout(authnode_env: AuthnodeEnv,
                                                     smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(LOGIN_ACCOUNT_LIMIT=f"{LIMIT_COUNT}/{WINDOW_S}s")
    first = env.start("all", name="api-a")
    second = env.start("api", name="api-b")
    try:
        _scenario(first, second, smtp)
    finally:
        second.kill()
        first.kill()


def _scenario(a: AuthnodeProcess, b: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    email, _ = register_verified(a.client, smtp, prefix="brute")

    failures: dict[str, int] = {"a": 0, "b": 0}
    window_opened_at: float | None = None  # before the first failure was sent
    first_failure_done: float | None = None
    for process, name in ((a, "a"), (b, "b"), (a, "a"), (b, "b"), (a, "a")):
        response, started, finished = _login(process, email, WRONG)
        assert_error(response, 401, "invalid_credentials")
        failures[name] += 1
        if window_opened_at is None:
            window_opened_at, first_failure_done = started, finished
    assert window_opened_at is not None and first_failure_done is not None
    assert failures == {"a": 3, "b": 2}
    five_failures_took = time.monotonic() - window_opened_at
    assert five_failures_took < MAX_SETUP_S, "too slow to test a window of this size"
    earliest_end = window_opened_at + WINDOW_S
    latest_end = first_failure_done + WINDOW_S

    # The 6th attempt, on either process, wrong or right password: locked.
    retry_afters = []
    for process, name, password in ((b, "b", WRONG), (a, "a", WRONG), (a, "a", PASSWORD),
                                    (b, "b", PASSWORD)):
        response, started, finished = _login(process, email, password)
        retry_after = _assert_locked(
            response, f"attempt after 3+2 failures on process {name} "
                      f"({'right' if password == PASSWORD else 'wrong'} password)")
        # Retry-After is the rest of the window as the server saw it, somewhere between
        # `started` and `finished`; 1 s either side for its rounding up to whole seconds
        # and for Redis' clock against ours.
        assert earliest_end - finished - 1 <= retry_after <= latest_end - started + 1, (
            retry_after, earliest_end - finished, latest_end - started)
        retry_afters.append(retry_after)

    # Poll with the correct password, alternating processes, until the lock releases.
    deadline = latest_end + 10
    locked_answers = 0
    last_locked_finished = 0.0
    released: tuple[float, float] | None = None
    turn = 0
    while time.monotonic() < deadline:
        process = (a, b)[turn % 2]
        turn += 1
        response, started, finished = _login(process, email, PASSWORD)
        if response.status_code == 200:
            released = (started, finished)
            break
        _assert_locked(response, f"poll {turn} with the right password")
        locked_answers += 1
        last_locked_finished = finished
        time.sleep(max(0.0, min(POLL_INTERVAL_S, deadline - time.monotonic())))
    assert released is not None, f"still locked {deadline - earliest_end:.1f}s after the window"
    release_started, release_finished = released

    # Held for the whole window: no 200 could have been decided before the earliest end.
    assert release_finished >= earliest_end, (
        f"released {earliest_end - release_finished:.2f}s before the window could end")
    # Released at its end, not later.
    assert release_started <= latest_end + POLL_INTERVAL_S + RELEASE_SLACK_S, (
        f"released {release_started - latest_end:.2f}s after the window ended")
    # After the release, both processes let the owner in.
    other = b if process is a else a
    response, _, _ = _login(other, email, PASSWORD)
    assert response.status_code == 200, describe(response)

    print(f"\nbrute force across instances: failures a={failures['a']} b={failures['b']} "
          f"(limit {LIMIT_COUNT}/{WINDOW_S}s) in {five_failures_took:.2f}s; "
          f"4 follow-up attempts on both processes -> 429, Retry-After {retry_afters}; "
          f"{locked_answers} right-password polls -> 429; "
          f"last 429 at +{last_locked_finished - window_opened_at:.2f}s, first 200 at "
          f"+{release_started - window_opened_at:.2f}s..+"
          f"{release_finished - window_opened_at:.2f}s after the first failure "
          f"(observed lockout {release_finished - window_opened_at:.2f}s, window {WINDOW_S}s)")
