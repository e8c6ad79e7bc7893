"""Hostile tests of the account lockout: it cannot be raced, and it cannot be turned
against the account's owner.

The real binary in both Redis modes. Client addresses are varied by binding each test
client to its own loopback source address (127.0.0.0/8 all reach the server on 127.0.0.1
on Linux), which is what the server sees as the client address; no forwarded header is
involved.

- 30 wrong passwords fired at once: exactly ``LOGIN_ACCOUNT_LIMIT``'s count (the default
  10) answer 401, the other 20 get 429 with ``Retry-After`` without a password check. The
  old peek-then-count lockout let all 30 through to the hash.
- An attacker locks only their own address: the owner logs in from theirs.
- Guesses sprayed over many addresses stop at ``LOGIN_ACCOUNT_TOTAL_LIMIT`` for every
  address, a fresh one too, and the account opens again when that window ends.
- Wrong current passwords on change-password and delete-account count as failed logins
  from the caller's address (a stolen access token is not a free guessing oracle).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx

from tests.acceptance.test_accounts_support import (
    PASSWORD,
    assert_error,
    bearer,
    describe,
    login,
    register_verified,
    running,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder, wait_until

WRONG = "definitely not the password"
DEFAULT_LIMIT_COUNT = 10  # LOGIN_ACCOUNT_LIMIT's default, 10/15m
CONCURRENT_GUESSES = 30


@contextmanager
def client_at(process: AuthnodeProcess, address: str) -> Iterator[httpx.Client]:
    """An HTTP client whose connections come from ``address`` (a loopback address)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=process.url, timeout=60, transport=transport) as client:
        yield client


def _login(client: httpx.Client, email: str, password: str) -> httpx.Response:
    return client.post("/v1/auth/login", json={"email": email, "password": password})


def assert_locked(response: httpx.Response, max_s: int, why: str) -> int:
    assert response.status_code == 429, f"{why}: {describe(response)}"
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit() and 1 <= int(retry_after) <= max_s, \
        f"{why}: Retry-After {retry_after!r} not in [1, {max_s}]"
    return int(retry_after)


def test_concurrent_wrong_passwords_get_no_more_checks_than_the_limit(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    with running(authnode_env) as process:
        email, _ = register_verified(process.client, smtp, prefix="race")

        async def fire() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=CONCURRENT_GUESSES)
            async with httpx.AsyncClient(base_url=process.url, timeout=120,
                                         limits=limits) as client:
                responses: list[httpx.Response] = []

                async def guess() -> None:
                    responses.append(await client.post(
                        "/v1/auth/login", json={"email": email, "password": WRONG}))

                async with anyio.create_task_group() as group:
                    for _ in range(CONCURRENT_GUESSES):
                        group.start_soon(guess)
                return responses

        responses = anyio.run(fire)
        statuses = Counter(response.status_code for response in responses)
        assert statuses == {401: DEFAULT_LIMIT_COUNT,
                            429: CONCURRENT_GUESSES - DEFAULT_LIMIT_COUNT}, statuses
        for response in responses:
            if response.status_code == 401:
                assert_error(response, 401, "invalid_credentials")
            else:
                assert_locked(response, 15 * 60, "a guess beyond the limit")
        # Locked now for this address, the right password too.
        assert_locked(_login(process.client, email, PASSWORD), 15 * 60,
                      "the right password after the burst")
        print(f"\n{CONCURRENT_GUESSES} concurrent wrong passwords: {dict(statuses)}")


def test_an_attackers_address_cannot_lock_the_owner_out(authnode_env: AuthnodeEnv,
                                                        smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(LOGIN_ACCOUNT_LIMIT="3/15m")
    with (running(env) as process, client_at(process, "127.0.0.2") as attacker,
          client_at(process, "127.0.0.3") as owner):
        email, _ = register_verified(process.client, smtp, prefix="victim")
        for _ in range(3):
            assert_error(_login(attacker, email, WRONG), 401, "invalid_credentials")
        assert_locked(_login(attacker, email, WRONG), 15 * 60, "the attacker's 4th guess")
        assert_locked(_login(attacker, email, PASSWORD), 15 * 60,
                      "the right password from the attacker's address")

        # The owner, from their own address: a typo, then in.
        assert_error(_login(owner, email, WRONG), 401, "invalid_credentials")
        login(owner, email)
        login(owner, email)
        # The owner's success does not unlock the attacker's address.
        assert_locked(_login(attacker, email, PASSWORD), 15 * 60,
                      "the attacker's address after the owner logged in")


def test_spraying_from_many_addresses_stops_at_the_account_cap(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    """3 failures per address and 7 per account: addresses .2, .3 and .4 get 3 + 3 + 1
    answers of 401, then every address is refused, a fresh one with the right password
    too, until the account-wide window ends; then the owner gets in."""
    total_window_s = 10
    env = authnode_env.with_overrides(LOGIN_ACCOUNT_LIMIT="3/15m",
                                      LOGIN_ACCOUNT_TOTAL_LIMIT=f"7/{total_window_s}s")
    with running(env) as process:
        email, _ = register_verified(process.client, smtp, prefix="sprayed")
        window_opened_at = time.monotonic()  # before the first failure was sent
        answers: list[tuple[str, int]] = []
        for last_octet, guesses in ((2, 3), (3, 3), (4, 2)):
            with client_at(process, f"127.0.0.{last_octet}") as sprayer:
                for _ in range(guesses):
                    answers.append((f".{last_octet}",
                                    _login(sprayer, email, WRONG).status_code))
        assert answers == [(".2", 401)] * 3 + [(".3", 401)] * 3 + [(".4", 401), (".4", 429)], \
            answers

        with client_at(process, "127.0.0.5") as owner:
            retry_after = assert_locked(_login(owner, email, PASSWORD), total_window_s,
                                        "the owner from a fresh address at the cap")

            def let_in() -> httpx.Response | None:
                response = _login(owner, email, PASSWORD)
                return response if response.status_code == 200 else None

            released = wait_until(let_in, total_window_s + 20,
                                  "the account-wide window to end", interval=0.2)
            released_at = time.monotonic()
            assert released_at >= window_opened_at + total_window_s, (
                f"opened {window_opened_at + total_window_s - released_at:.2f}s early")
        with client_at(process, "127.0.0.2") as sprayer:
            # The sprayer's own address is still locked for its own, longer window.
            assert_locked(_login(sprayer, email, PASSWORD), 15 * 60,
                          "a sprayer's address after the account-wide window")
        assert released.json()["user"]["email"] == email
        print(f"\nspraying 3 addresses: {answers}; owner refused (Retry-After "
              f"{retry_after}s), then in {released_at - window_opened_at:.1f}s after the "
              f"first failure (window {total_window_s}s)")


def test_wrong_current_passwords_count_against_the_lockout(authnode_env: AuthnodeEnv,
                                                           smtp: SmtpRecorder) -> None:
    """A thief with the owner's access token, at 127.0.0.2, guesses the current password
    through change-password and delete-account: three guesses, then 429 on both, and on
    login from that address. The owner, at 127.0.0.1, changes the password."""
    env = authnode_env.with_overrides(LOGIN_ACCOUNT_LIMIT="3/15m")
    with running(env) as process, client_at(process, "127.0.0.2") as thief:
        email, _ = register_verified(process.client, smtp, prefix="stolen")
        stolen = bearer(login(process.client, email)["access_token"])

        def change(client: httpx.Client, current: str) -> httpx.Response:
            return client.post("/v1/auth/password/change", headers=stolen, json={
                "current_password": current, "new_password": "a brand new passphrase 42"})

        def delete(client: httpx.Client, password: str) -> httpx.Response:
            return client.request("DELETE", "/v1/users/me", headers=stolen,
                                  json={"password": password})

        for guess in (change, delete, change):
            assert_error(guess(thief, WRONG), 401, "invalid_credentials")
        assert_locked(change(thief, WRONG), 15 * 60, "the 4th guess through change-password")
        assert_locked(delete(thief, WRONG), 15 * 60, "a guess through delete-account")
        assert_locked(change(thief, PASSWORD), 15 * 60, "the right password, thief's address")
        assert_locked(_login(thief, email, PASSWORD), 15 * 60, "login from the thief's address")

        # The owner's address is its own counter: the change goes through.
        response = change(process.client, PASSWORD)
        assert response.status_code == 204, describe(response)
        login(process.client, email, "a brand new passphrase 42")
