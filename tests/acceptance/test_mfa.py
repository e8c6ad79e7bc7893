"""Second factors over HTTP, against the real binary, in both Redis modes: TOTP with
recovery codes, passkeys (a software authenticator; the browser test drives Chromium's
virtual one), step-up and reauthentication, and what an attacker tries."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt

from authnode.mfa import totp
from tests.acceptance.test_accounts_support import (
    NEW_PASSWORD,
    PASSWORD,
    assert_error,
    assert_tokens,
    bearer,
    describe,
    login,
    register_verified,
    wait_mail,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder, wait_until
from tests.software_authenticator import SoftAuthenticator

ORIGIN = "http://auth.example.test"  # PUBLIC_URL of the acceptance environment
ADDED_SUBJECT = "A second factor was added to your account"
REMOVED_SUBJECT = "A second factor was removed from your account"
RECOVERY_USED_SUBJECT = "A recovery code was used"


def _claims(access_token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


# The steps whose codes a test has sent, per secret: the server accepts a step once.
_SENT_STEPS: dict[str, set[int]] = {}
# Codes are computed with at least this long left in the current step, so that a step
# boundary cannot carry a code out of the drift window while its request is on the way.
STEP_MARGIN_S = 10.0


def _step_code(secret: str, step_offset: int) -> str:
    """The code of the step ``step_offset`` from now, or, when that step was already sent
    (a slow run can cross a step boundary between two codes), the newest unsent step of the
    drift window; waits for one if none is left. For replays, keep the string."""
    sent = _SENT_STEPS.setdefault(secret, set())
    assert abs(step_offset) <= totp.DRIFT_STEPS, "outside the window: use _outside_window"

    def free_step() -> int | None:
        if totp.STEP_S - time.time() % totp.STEP_S < STEP_MARGIN_S:
            return None
        now = totp.current_step(time.time())
        window = range(now + totp.DRIFT_STEPS, now - totp.DRIFT_STEPS - 1, -1)
        wanted = [now + step_offset, *window]
        return next((step for step in wanted if step not in sent), None)

    step = wait_until(free_step, timeout=3 * totp.STEP_S,
                      message="a TOTP step not yet used by this test")
    assert step is not None
    sent.add(step)
    return totp.code_at(secret, step * totp.STEP_S)


def _outside_window(secret: str, steps_back: int = 3) -> str:
    """A real code of this secret that is too old for the drift window."""
    return totp.code_at(secret, time.time() - steps_back * totp.STEP_S)


def _me(client: httpx.Client, access_token: str) -> dict[str, Any]:
    response = client.get("/v1/users/me", headers=bearer(access_token))
    assert response.status_code == 200, describe(response)
    me: dict[str, Any] = response.json()
    return me


def enroll_totp(client: httpx.Client, access_token: str, *,
                step_offset: int = 0) -> tuple[str, list[str]]:
    """Enrol TOTP with a code of the step ``step_offset`` from now; (secret, codes)."""
    started = client.post("/v1/mfa/totp", headers=bearer(access_token))
    assert started.status_code == 200, describe(started)
    enrolment = started.json()
    assert set(enrolment) == {"secret", "otpauth_uri", "qr_svg"}
    secret = enrolment["secret"]
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={secret}" in enrolment["otpauth_uri"]
    assert enrolment["qr_svg"].startswith("<svg")
    confirmed = client.post("/v1/mfa/totp/confirm", headers=bearer(access_token),
                            json={"code": _step_code(secret, step_offset)})
    assert confirmed.status_code == 200, describe(confirmed)
    codes: list[str] = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    return secret, codes


def mfa_required(client: httpx.Client, email: str, methods: list[str],
                 password: str = PASSWORD) -> str:
    """Log in with the password: 401 mfa_required naming ``methods``; the mfa_token."""
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401, describe(response)
    body = response.json()
    assert set(body) == {"error", "mfa_token", "methods"}, body
    assert body["error"]["code"] == "mfa_required"
    assert body["methods"] == methods
    token: str = body["mfa_token"]
    return token


def finish(client: httpx.Client, mfa_token: str, code: str) -> httpx.Response:
    return client.post("/v1/auth/mfa", json={"mfa_token": mfa_token, "code": code})


def test_totp_enrolment_login_replay_and_recovery_codes(
        authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    first = login(client, email)
    assert _me(client, first["access_token"])["mfa"] == {
        "totp": False, "webauthn": 0, "recovery_codes_left": 0}
    secret, codes = enroll_totp(client, first["access_token"], step_offset=1)
    wait_mail(smtp, email, ADDED_SUBJECT)
    assert _me(client, first["access_token"])["mfa"] == {
        "totp": True, "webauthn": 0, "recovery_codes_left": 10}

    # The password alone no longer logs in; a code of the drift window does, once.
    token = mfa_required(client, email, ["totp", "recovery_code"])
    code = _step_code(secret, -1)
    tokens = assert_tokens(finish(client, token, code), email=email)
    claims = _claims(tokens["access_token"])
    assert claims["amr"] == ["pwd", "otp"] and claims["aal"] == 2
    assert abs(claims["auth_time"] - time.time()) < 60
    assert _claims(assert_tokens(client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    )["access_token"])["aal"] == 2, "a refresh keeps the session's assurance"
    again = mfa_required(client, email, ["totp", "recovery_code"])
    assert_error(finish(client, again, code), 400, "invalid_code")  # replayed
    assert_error(finish(client, again, _outside_window(secret)), 400, "invalid_code")
    assert_tokens(finish(client, again, _step_code(secret, 0)), email=email)
    assert_error(finish(client, again, _step_code(secret, 0)), 401, "invalid_token"), \
        "a finished login's mfa_token is spent"

    # A recovery code works once, and the user hears of it.
    token = mfa_required(client, email, ["totp", "recovery_code"])
    recovered = assert_tokens(finish(client, token, codes[0].upper()), email=email)
    assert _claims(recovered["access_token"])["amr"] == ["pwd", "otp"]
    wait_mail(smtp, email, RECOVERY_USED_SUBJECT)
    token = mfa_required(client, email, ["totp", "recovery_code"])
    assert_error(finish(client, token, codes[0]), 400, "invalid_code")
    assert _me(client, recovered["access_token"])["mfa"]["recovery_codes_left"] == 9

    # A fresh set replaces the old one.
    fresh = client.post("/v1/mfa/recovery-codes", headers=bearer(recovered["access_token"]),
                        json={"code": codes[1]})
    assert fresh.status_code == 200, describe(fresh)
    new_codes = fresh.json()["recovery_codes"]
    token = mfa_required(client, email, ["totp", "recovery_code"])
    assert_error(finish(client, token, codes[2]), 400, "invalid_code")
    assert_tokens(finish(client, token, new_codes[0]), email=email)


def test_five_wrong_codes_end_the_mfa_token(authnode: AuthnodeProcess,
                                            smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    secret, _ = enroll_totp(client, login(client, email)["access_token"], step_offset=1)
    token = mfa_required(client, email, ["totp", "recovery_code"])
    right = _step_code(secret, 0)
    wrong = str((int(right) + 1) % 1_000_000).zfill(6)
    for _ in range(4):
        assert_error(finish(client, token, wrong), 400, "invalid_code")
    assert_error(finish(client, token, wrong), 429, "rate_limited")
    assert_error(finish(client, token, right), 429, "rate_limited"), "the token is dead"
    # A new login gets a new token.
    assert_tokens(finish(client, mfa_required(client, email, ["totp", "recovery_code"]),
                         right), email=email)


def test_step_up_and_reauthentication(authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    before = login(client, email)  # AAL1: logged in before the second factor existed
    secret, codes = enroll_totp(client, before["access_token"], step_offset=1)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    for method, path, body in (("POST", "/v1/auth/password/change", change),
                               ("DELETE", "/v1/mfa/totp", {"code": codes[0]}),
                               ("POST", "/v1/mfa/webauthn/register/options", None),
                               ("DELETE", "/v1/users/me", {"password": PASSWORD})):
        refused = client.request(method, path, headers=bearer(before["access_token"]),
                                 json=body)
        assert_error(refused, 403, "reauthentication_required")

    # A password proves one factor: still refused.
    by_password = client.post("/v1/auth/reauthenticate", headers=bearer(before["access_token"]),
                              json={"password": PASSWORD})
    assert by_password.status_code == 200, describe(by_password)
    one_factor = by_password.json()["access_token"]
    assert _claims(one_factor)["aal"] == 1
    assert_error(client.post("/v1/auth/password/change", headers=bearer(one_factor),
                             json=change), 403, "reauthentication_required")
    wrong = client.post("/v1/auth/reauthenticate", headers=bearer(before["access_token"]),
                        json={"password": "not the password"})
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(client.post("/v1/auth/reauthenticate", headers=bearer(one_factor),
                             json={"password": PASSWORD, "code": "123456"}),
                 422, "invalid_request")

    # A code makes this session AAL2 and recent: the change goes through.
    by_code = client.post("/v1/auth/reauthenticate", headers=bearer(before["access_token"]),
                          json={"code": _step_code(secret, 0)})
    assert by_code.status_code == 200, describe(by_code)
    stepped = by_code.json()
    assert set(stepped) == {"access_token", "token_type", "expires_in"}
    claims = _claims(stepped["access_token"])
    assert claims["aal"] == 2 and claims["amr"] == ["pwd", "otp"]
    assert claims["sid"] == _claims(before["access_token"])["sid"], "the same session"
    changed = client.post("/v1/auth/password/change", headers=bearer(stepped["access_token"]),
                          json=change)
    assert changed.status_code == 204, describe(changed)
    removed = client.request("DELETE", "/v1/mfa/totp",
                             headers=bearer(stepped["access_token"]),
                             json={"code": codes[0]})
    assert removed.status_code == 204, describe(removed)
    wait_mail(smtp, email, REMOVED_SUBJECT)
    assert_tokens(client.post("/v1/auth/login", json={"email": email,
                                                       "password": NEW_PASSWORD}),
                  email=email), "without a second factor the password is enough again"
    assert _me(client, stepped["access_token"])["mfa"] == {
        "totp": False, "webauthn": 0, "recovery_codes_left": 0}


def test_tokens_are_not_interchangeable(authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    client = authnode.client
    alice, _ = register_verified(client, smtp, prefix="alice")
    bob, _ = register_verified(client, smtp, prefix="bob")
    alice_secret, _ = enroll_totp(client, login(client, alice)["access_token"], step_offset=1)
    bob_tokens = login(client, bob)
    bob_secret, _ = enroll_totp(client, bob_tokens["access_token"], step_offset=1)
    alice_mfa = mfa_required(client, alice, ["totp", "recovery_code"])

    # An mfa_token is not a bearer token, and an access token is not an mfa_token.
    assert_error(client.get("/v1/users/me", headers=bearer(alice_mfa)), 401, "invalid_token")
    assert_error(finish(client, bob_tokens["access_token"], _step_code(bob_secret, 0)),
                 401, "invalid_token")
    assert_error(finish(client, "x" * 43, _step_code(alice_secret, 0)), 401, "invalid_token")
    # Bob's code does not finish Alice's login.
    assert_error(finish(client, alice_mfa, _step_code(bob_secret, -1)), 400, "invalid_code")
    # Junk never is a 500.
    for junk in ({"mfa_token": alice_mfa}, {"mfa_token": alice_mfa, "code": 123456},
                 {"mfa_token": alice_mfa, "code": "\u0661\u0662\u0663\u0664\u0665\u0666"},
                 {"mfa_token": 1, "code": "1"}):
        response = client.post("/v1/auth/mfa", json=junk)
        assert response.status_code in (400, 422), describe(response)


# --------------------------------------------------------------------------- passkeys


def register_passkey(client: httpx.Client, access_token: str, authenticator: SoftAuthenticator,
                     name: str = "laptop") -> dict[str, Any]:
    options = client.post("/v1/mfa/webauthn/register/options", headers=bearer(access_token))
    assert options.status_code == 200, describe(options)
    public_key = options.json()
    assert public_key["rp"]["id"] == "auth.example.test"
    created = client.post("/v1/mfa/webauthn/register", headers=bearer(access_token),
                          json={"credential": authenticator.create(public_key), "name": name})
    assert created.status_code == 201, describe(created)
    passkey: dict[str, Any] = created.json()
    return passkey


def test_passkey_as_second_factor_and_passwordless(authnode: AuthnodeProcess,
                                                   smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, user = register_verified(client, smtp)
    tokens = login(client, email)
    authenticator = SoftAuthenticator(ORIGIN)
    passkey = register_passkey(client, tokens["access_token"], authenticator)
    assert passkey["name"] == "laptop" and passkey["id"] == authenticator.credentials[0].id
    wait_mail(smtp, email, ADDED_SUBJECT)
    listed = client.get("/v1/mfa/webauthn", headers=bearer(tokens["access_token"])).json()
    assert [p["id"] for p in listed["passkeys"]] == [passkey["id"]]
    assert _me(client, tokens["access_token"])["mfa"]["webauthn"] == 1

    # Second factor after the password.
    token = mfa_required(client, email, ["webauthn"])
    options = client.post("/v1/auth/mfa/webauthn/options", json={"mfa_token": token})
    assert options.status_code == 200, describe(options)
    assertion = authenticator.get(options.json())
    finished = client.post("/v1/auth/mfa/webauthn",
                           json={"mfa_token": token, "credential": assertion})
    second = assert_tokens(finished, email=email)
    assert _claims(second["access_token"])["amr"] == ["pwd", "hwk"]
    assert _claims(second["access_token"])["aal"] == 2

    # The session from before the passkey steps up with it.
    options = client.post("/v1/auth/reauthenticate/options",
                          headers=bearer(tokens["access_token"]))
    assert options.status_code == 200, describe(options)
    stepped = client.post("/v1/auth/reauthenticate", headers=bearer(tokens["access_token"]),
                          json={"credential": authenticator.get(options.json())})
    assert stepped.status_code == 200, describe(stepped)
    claims = _claims(stepped.json()["access_token"])
    assert claims["amr"] == ["pwd", "hwk"] and claims["aal"] == 2
    assert claims["sid"] == _claims(tokens["access_token"])["sid"]

    # Passwordless.
    options = client.post("/v1/auth/passkey/options")
    assert options.status_code == 200, describe(options)
    assert "allowCredentials" not in options.json() or not options.json()["allowCredentials"]
    assertion = authenticator.get(options.json())
    alone = assert_tokens(client.post("/v1/auth/passkey", json={"credential": assertion}),
                          email=email)
    claims = _claims(alone["access_token"])
    assert claims["amr"] == ["hwk"] and claims["aal"] == 2 and claims["sub"] == user["id"]
    # The same answer again: its challenge is spent.
    assert_error(client.post("/v1/auth/passkey", json={"credential": assertion}),
                 401, "invalid_credentials")

    # Removing it (a fresh AAL2 session may) brings the password-only login back.
    removed = client.delete(f"/v1/mfa/webauthn/{passkey['id']}",
                            headers=bearer(alone["access_token"]))
    assert removed.status_code == 204, describe(removed)
    login(client, email)


def test_passkey_attacks_are_refused(authnode: AuthnodeProcess, smtp: SmtpRecorder) -> None:
    client = authnode.client
    alice, _ = register_verified(client, smtp, prefix="alice")
    bob, _ = register_verified(client, smtp, prefix="bob")
    alice_key, bob_key = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN)
    register_passkey(client, login(client, alice)["access_token"], alice_key)
    register_passkey(client, login(client, bob)["access_token"], bob_key)

    def options_for(email: str) -> tuple[str, dict[str, Any]]:
        token = mfa_required(client, email, ["webauthn"])
        response = client.post("/v1/auth/mfa/webauthn/options", json={"mfa_token": token})
        assert response.status_code == 200, describe(response)
        return token, response.json()

    def answer(token: str, credential: dict[str, Any]) -> httpx.Response:
        return client.post("/v1/auth/mfa/webauthn",
                           json={"mfa_token": token, "credential": credential})

    # Bob's passkey answering Alice's challenge.
    token, options = options_for(alice)
    forged = bob_key.get({**options, "allowCredentials": []})
    assert_error(answer(token, forged), 400, "invalid_code")
    # Another origin (a phishing site relaying the challenge).
    token, options = options_for(alice)
    assert_error(answer(token, alice_key.get(options, origin="https://evil.example")),
                 400, "invalid_code")
    # A counter that goes back (a cloned authenticator).
    token, options = options_for(alice)
    assert_tokens(answer(token, alice_key.get(options, sign_count=10)))
    token, options = options_for(alice)
    assert_error(answer(token, alice_key.get(options, sign_count=5)), 400, "invalid_code")
    # A challenge replayed into another login.
    token, options = options_for(alice)
    good = alice_key.get(options, sign_count=20)
    assert_tokens(answer(token, good))
    other, _ = options_for(alice)
    assert_error(answer(other, good), 400, "invalid_code")
    # A challenge of Alice's login used to finish Bob's.
    alice_token, alice_options = options_for(alice)
    bob_token, _ = options_for(bob)
    assert_error(answer(bob_token, bob_key.get({**alice_options, "allowCredentials": []})),
                 400, "invalid_code")
    # Passwordless with a passkey the user handle does not own.
    options = client.post("/v1/auth/passkey/options").json()
    wrong_owner = alice_key.get(options, sign_count=30)
    wrong_owner["response"]["userHandle"] = bob_key.get(
        {**options, "allowCredentials": []}, sign_count=30)["response"]["userHandle"]
    assert_error(client.post("/v1/auth/passkey", json={"credential": wrong_owner}),
                 401, "invalid_credentials")
    # A passkey that did not verify the user cannot log in alone.
    unverified = SoftAuthenticator(ORIGIN, user_verified=False)
    unverified.credentials = alice_key.credentials
    options = client.post("/v1/auth/passkey/options").json()
    assert_error(client.post("/v1/auth/passkey",
                             json={"credential": unverified.get(options, sign_count=40)}),
                 401, "invalid_credentials")
    # Junk is a clear error.
    for junk in ({"credential": {}}, {"credential": {"id": "x", "response": "y"}},
                 {"credential": json.dumps({"id": "x"})}):
        response = client.post("/v1/auth/passkey", json=junk)
        assert response.status_code in (401, 422), describe(response)
    _ = alice_token


def test_support_resets_second_factors(authnode: AuthnodeProcess, authnode_env: AuthnodeEnv,
                                       smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    enroll_totp(client, login(client, email)["access_token"], step_offset=1)
    mfa_required(client, email, ["totp", "recovery_code"])
    result = authnode_env.run("users", "mfa-reset", email, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["second_factors_removed"] is True
    wait_mail(smtp, email, REMOVED_SUBJECT)
    login(client, email)
    again = authnode_env.run("users", "mfa-reset", email)
    assert again.returncode == 0 and "had no second factor" in again.stdout
