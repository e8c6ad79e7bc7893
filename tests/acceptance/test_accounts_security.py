"""Security properties seen from outside: no user enumeration, rate limits with
``Retry-After``, access tokens that verify with a stock JWT library, and forged, tampered,
expired and algorithm-confused tokens that are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.acceptance.test_accounts_support import (
    ACCEPTED,
    ALREADY_REGISTERED_SUBJECT,
    OTHER_PASSWORD,
    PASSWORD,
    RESET_SUBJECT,
    VERIFY_SUBJECT,
    assert_access_refused,
    assert_access_works,
    assert_error,
    bearer,
    describe,
    login,
    refresh,
    register,
    register_verified,
    running,
    verification_token,
    verify,
    wait_email_jobs_settled,
    wait_mail,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess, link_token, unique_email
from tests.services import SmtpRecorder, wait_until

PUBLIC_URL = "http://auth.example.test"  # tests/acceptance/conftest.py


# --------------------------------------------------------------------------- enumeration


def check_registering_an_unverified_address_again(client: httpx.Client,
                                                  smtp: SmtpRecorder) -> None:
    """A second registration of a still-unverified address changes nothing about the
    first: its link still creates the account with the first password; the second link
    dies once the first is confirmed."""
    email = unique_email("twice")
    register(client, email, PASSWORD)
    first_link = verification_token(smtp, email)
    register(client, email, OTHER_PASSWORD)
    second_link = verification_token(smtp, email, count=2)
    verify(client, first_link)
    assert_error(client.post("/v1/auth/verify-email", json={"token": second_link}),
                 400, "invalid_token")
    assert_error(client.post("/v1/auth/login",
                             json={"email": email, "password": OTHER_PASSWORD}),
                 401, "invalid_credentials")
    login(client, email, PASSWORD)


def test_no_user_enumeration(authnode: AuthnodeProcess, authnode_env: AuthnodeEnv,
                             smtp: SmtpRecorder) -> None:
    client = authnode.client
    known, _ = register_verified(client, smtp, prefix="known")
    unverified = unique_email("pending")
    register(client, unverified)
    verification_token(smtp, unverified)
    unknown = unique_email("nobody")

    # Register an existing (verified) address: the same answer as a new one, and the
    # owner gets a notice instead of a link; the account is not taken over.
    new_answer = client.post("/v1/auth/register",
                             json={"email": unique_email("new"), "password": PASSWORD})
    again = client.post("/v1/auth/register", json={"email": known, "password": OTHER_PASSWORD})
    assert (again.status_code, again.json()) == (new_answer.status_code, new_answer.json()) \
        == (202, ACCEPTED), (describe(again), describe(new_answer))
    notice = wait_mail(smtp, known, ALREADY_REGISTERED_SUBJECT)
    assert not [link for link in notice.links() if "token=" in link or "/verify-email" in link], \
        f"the 'already registered' notice carries a link with a token: {notice.links()}"
    assert "token=" not in notice.text and "token=" not in (notice.html or "")
    login(client, known, PASSWORD)
    assert_error(client.post("/v1/auth/login", json={"email": known, "password": OTHER_PASSWORD}),
                 401, "invalid_credentials")

    # Resend and forgot: the unknown address first, so its job is queued before the
    # known one's; identical answers; then only the known addresses get mail.
    answers: dict[str, list[tuple[int, Any]]] = {}
    for path, addresses in (("/v1/auth/verify-email/resend", (unknown, unverified, known)),
                            ("/v1/auth/password/forgot", (unknown, known, "not-an-address"))):
        for address in addresses:
            response = client.post(path, json={"email": address})
            answers.setdefault(path, []).append((response.status_code, response.json()))
    for path, seen in answers.items():
        assert seen[0][0] == 202, (path, seen)
        assert all(answer == seen[0] for answer in seen), \
            f"{path} answers differ between unknown and known addresses: {seen}"

    wait_mail(smtp, unverified, VERIFY_SUBJECT, count=2)
    wait_mail(smtp, known, RESET_SUBJECT)
    wait_email_jobs_settled(authnode_env)
    stray = [m.subject for m in smtp.messages(unknown)]
    assert stray == [], f"mail was sent to an address with no account: {stray}"
    assert [m.subject for m in smtp.messages(known)].count(VERIFY_SUBJECT) == 1, \
        "a verified address got a new verification link from resend"

    # Login: an unknown address and a wrong password look the same.
    unknown_login = client.post("/v1/auth/login", json={"email": unknown, "password": PASSWORD})
    wrong_password = client.post("/v1/auth/login",
                                 json={"email": known, "password": OTHER_PASSWORD})
    assert_error(unknown_login, 401, "invalid_credentials")
    assert unknown_login.json() == wrong_password.json()
    assert unknown_login.headers.get("www-authenticate") == \
        wrong_password.headers.get("www-authenticate")

    # ...and take comparable time: the unknown address is checked against a dummy hash.
    def fastest(email: str) -> float:
        times = []
        for _ in range(4):
            started = time.perf_counter()
            client.post("/v1/auth/login", json={"email": email, "password": OTHER_PASSWORD})
            times.append(time.perf_counter() - started)
        return min(times)

    unknown_s, known_s = fastest(unique_email("nobody")), fastest(known)
    assert unknown_s > 0.3 * known_s, \
        f"login for an unknown address is much faster ({unknown_s:.3f}s vs {known_s:.3f}s)"

    check_registering_an_unverified_address_again(client, smtp)


# --------------------------------------------------------------------------- rate limits


def assert_rate_limited(response: httpx.Response, max_s: int) -> int:
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers.get("retry-after", "")
    assert re.fullmatch(r"[0-9]+", retry_after), f"Retry-After {retry_after!r}"
    assert 0 < int(retry_after) <= max_s, f"Retry-After {retry_after} not in (0, {max_s}]"
    return int(retry_after)


def test_rate_limits_answer_429_with_retry_after(authnode_env: AuthnodeEnv,
                                                  smtp: SmtpRecorder) -> None:
    """LOGIN_ACCOUNT_LIMIT=3/1m and REGISTER_IP_LIMIT=2/1h; the two accounts this test
    needs are the two registrations the IP may make."""
    env = authnode_env.with_overrides(LOGIN_ACCOUNT_LIMIT="3/1m", REGISTER_IP_LIMIT="2/1h")
    with running(env) as process:
        client = process.client
        email, _ = register_verified(client, smtp)
        bystander, _ = register_verified(client, smtp, prefix="bystander")

        # Per account: 3 failures, then even the right password gets 429.
        for _ in range(3):
            assert_error(client.post("/v1/auth/login",
                                     json={"email": email, "password": OTHER_PASSWORD}),
                         401, "invalid_credentials")
        locked = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert_rate_limited(locked, 60)
        assert_rate_limited(client.post("/v1/auth/login",
                                        json={"email": email, "password": OTHER_PASSWORD}), 60)

        # An address with no account locks the same way (no enumeration through the lock).
        nobody = unique_email("nobody")
        for _ in range(3):
            assert_error(client.post("/v1/auth/login",
                                     json={"email": nobody, "password": PASSWORD}),
                         401, "invalid_credentials")
        assert_rate_limited(client.post("/v1/auth/login",
                                        json={"email": nobody, "password": PASSWORD}), 60)

        # The lock is per account: another account on the same IP logs in.
        login(client, bystander)

        # Per IP on register: the third registration from this IP is refused.
        limited = client.post("/v1/auth/register",
                              json={"email": unique_email("burst"), "password": PASSWORD})
        assert_rate_limited(limited, 3600)


# --------------------------------------------------------------------------- tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def flip_char(segment: str, index: int) -> str:
    """Change one character in the middle of a base64url segment (a different byte)."""
    replacement = "A" if segment[index] != "A" else "B"
    return segment[:index] + replacement + segment[index + 1:]


def hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def forged_tokens(token: str, jwk: dict[str, str], other_user_id: str) -> dict[str, str]:
    header_segment, payload_segment, signature_segment = token.split(".")
    header = json.loads(unb64url(header_segment))
    claims = json.loads(unb64url(payload_segment))
    x_raw = unb64url(jwk["x"])
    pem = jwt.PyJWK(jwk).key.public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    stranger_key = Ed25519PrivateKey.generate()
    stranger_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(stranger_key.public_key()))
    far_future = {**claims, "exp": claims["exp"] + 86400 * 365}
    as_other = {**claims, "sub": other_user_id}

    return {
        "payload byte changed": ".".join(
            (header_segment, flip_char(payload_segment, len(payload_segment) // 2),
             signature_segment)),
        "payload claims rewritten (sub)": ".".join(
            (header_segment, b64url_json(as_other), signature_segment)),
        "payload claims rewritten (exp)": ".".join(
            (header_segment, b64url_json(far_future), signature_segment)),
        "signature byte changed": ".".join(
            (header_segment, payload_segment,
             flip_char(signature_segment, len(signature_segment) // 2))),
        "signature truncated": ".".join((header_segment, payload_segment,
                                         signature_segment[:-4])),
        "signature of another key, same kid": jwt.encode(
            as_other, stranger_key, algorithm="EdDSA", headers={"kid": header["kid"]}),
        "another key embedded in the header (jwk)": jwt.encode(
            as_other, stranger_key, algorithm="EdDSA",
            headers={"kid": header["kid"], "jwk": stranger_jwk}),
        "unknown kid": jwt.encode(claims, stranger_key, algorithm="EdDSA",
                                  headers={"kid": "no-such-key-id"}),
        "no kid": jwt.encode(claims, stranger_key, algorithm="EdDSA"),
        "alg none, no signature": f"{b64url_json({**header, 'alg': 'none'})}."
                                  f"{b64url_json(as_other)}.",
        "alg none, original signature": f"{b64url_json({**header, 'alg': 'none'})}."
                                        f"{payload_segment}.{signature_segment}",
        "alg None (capitalised)": f"{b64url_json({**header, 'alg': 'None'})}."
                                  f"{b64url_json(as_other)}.",
        "HS256 keyed with the raw public key (x)": hs256({**header, "alg": "HS256"},
                                                         as_other, x_raw),
        "HS256 keyed with the public key PEM": hs256({**header, "alg": "HS256"},
                                                     as_other, pem),
        "HS256 keyed with the x string": hs256({**header, "alg": "HS256"}, as_other,
                                               jwk["x"].encode()),
        "HS256 keyed with the JWK JSON": hs256({**header, "alg": "HS256"}, as_other,
                                               json.dumps(jwk).encode()),
        "two tokens glued": token + "." + signature_segment,
        "header only": header_segment,
    }


def test_jwks_verifies_tokens_and_forgeries_are_refused(authnode: AuthnodeProcess,
                                                        smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, user = register_verified(client, smtp)
    other_email, other_user = register_verified(client, smtp, prefix="other")
    tokens = login(client, email)
    token = tokens["access_token"]

    published = client.get("/.well-known/jwks.json")
    assert published.status_code == 200, describe(published)
    assert published.headers["content-type"].startswith("application/json")
    cache = published.headers.get("cache-control", "")
    match = re.fullmatch(r"public,\s*max-age=(\d+)", cache)
    assert match and int(match.group(1)) > 0, f"Cache-Control {cache!r}"
    keys = published.json()["keys"]
    assert keys, published.json()
    for key in keys:
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519", key
        assert not {"d", "p", "q", "k"} & set(key), f"private material published: {key}"

    # A stock library verifies the token with the published key.
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    jwk = next((key for key in keys if key["kid"] == header["kid"]), None)
    assert jwk is not None, f"kid {header['kid']} not in the JWKS {keys}"
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["EdDSA"], issuer=PUBLIC_URL,
                        options={"verify_aud": False, "require": ["iss", "sub", "iat", "exp"]})
    assert {"iss", "sub", "sid", "iat", "exp", "jti"} <= set(claims), claims
    assert claims["iss"] == PUBLIC_URL
    assert claims["sub"] == user["id"]
    assert claims["exp"] - claims["iat"] == tokens["expires_in"]
    assert abs(claims["iat"] - time.time()) < 60
    current = [s for s in client.get("/v1/sessions", headers=bearer(token)).json()["sessions"]
               if s["current"]]
    assert [s["id"] for s in current] == [claims["sid"]]
    renewed = refresh(client, tokens["refresh_token"])
    renewed_claims = jwt.decode(renewed["access_token"], jwt.PyJWK(jwk).key,
                                algorithms=["EdDSA"], issuer=PUBLIC_URL,
                                options={"verify_aud": False})
    assert renewed_claims["jti"] != claims["jti"]
    assert renewed_claims["sid"] == claims["sid"]

    # Forgeries: every one is refused (and none is taken for the other user).
    for what, forged in forged_tokens(token, jwk, other_user["id"]).items():
        response = client.get("/v1/users/me", headers=bearer(forged))
        assert response.status_code == 401, f"forged token accepted ({what}): {describe(response)}"
        assert_error(response, 401, "invalid_token")
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), what
    assert_access_works(client, token, "the genuine token after the forgeries")
    assert login(client, other_email)["user"] == other_user


def test_expired_access_token_is_refused(authnode_env: AuthnodeEnv,
                                         smtp: SmtpRecorder) -> None:
    with running(authnode_env.with_overrides(ACCESS_TOKEN_TTL="1")) as process:
        client = process.client
        email, _ = register_verified(client, smtp)
        tokens = login(client, email)
        assert tokens["expires_in"] == 1
        expires_at = jwt.decode(tokens["access_token"],
                                options={"verify_signature": False})["exp"]

        def refused() -> httpx.Response | None:
            response = client.get("/v1/users/me", headers=bearer(tokens["access_token"]))
            return response if response.status_code == 401 else None

        response = wait_until(refused, 30, "the 1-second access token to be refused")
        assert response is not None
        assert time.time() >= expires_at, "refused before it expired"
        assert_error(response, 401, "invalid_token")
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
        # It stays refused, and the session goes on through its refresh token.
        assert_access_refused(client, tokens["access_token"], "expired")
        renewed = refresh(client, tokens["refresh_token"])
        assert_access_works(client, renewed["access_token"], "fresh token after expiry")


# --------------------------------------------------------------------------- concurrency

RACERS = 4
ROUNDS = 10


def race(url: str, path: str, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    """POST every body at the same moment, each from its own connection."""
    clients = [httpx.Client(base_url=url, timeout=30) for _ in bodies]
    try:
        for own in clients:  # connect first, so the requests leave together
            own.get("/healthz")
        barrier = threading.Barrier(len(bodies))

        def post(own: httpx.Client, body: dict[str, str]) -> httpx.Response:
            barrier.wait()
            return own.post(path, json=body)

        with ThreadPoolExecutor(len(bodies)) as pool:
            return list(pool.map(post, clients, bodies))
    finally:
        for own in clients:
            own.close()


@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_single_use_tokens_under_concurrent_use(authnode: AuthnodeProcess,
                                                smtp: SmtpRecorder) -> None:
    """The same refresh token sent by several clients at once is one rotation (everyone
    gets the same successor), and one reset link used at once sets one password.
    Both rest on a conditional, atomic single-document update in the document store."""
    client = authnode.client
    email, _ = register_verified(client, smtp)
    problems: list[str] = []

    token = login(client, email)["refresh_token"]
    for round_ in range(ROUNDS):
        answers = race(authnode.url, "/v1/auth/refresh", [{"refresh_token": token}] * RACERS)
        assert all(answer.status_code == 200 for answer in answers), \
            [describe(answer) for answer in answers]
        successors = {answer.json()["refresh_token"] for answer in answers}
        if len(successors) != 1:
            problems.append(f"round {round_}: {RACERS} concurrent refreshes of one token "
                            f"were {len(successors)} rotations")
            break
        token = answers[-1].json()["refresh_token"]
        live = client.post("/v1/auth/refresh", json={"refresh_token": token})
        if live.status_code != 200:
            problems.append(f"round {round_}: the successor handed out last is dead: "
                            f"{describe(live)}")
            break
        token = live.json()["refresh_token"]

    for round_ in range(1, 4):
        client.post("/v1/auth/password/forgot", json={"email": email})
        link = link_token(wait_mail(smtp, email, RESET_SUBJECT, round_), "/reset-password")
        passwords = [f"{OTHER_PASSWORD} {round_}.{n}" for n in range(RACERS)]
        answers = race(authnode.url, "/v1/auth/password/reset",
                       [{"token": link, "password": password} for password in passwords])
        accepted = [answer.status_code for answer in answers].count(204)
        if accepted != 1:
            problems.append(f"one reset link used {RACERS} times at once set the password "
                            f"{accepted} times: {[a.status_code for a in answers]}")
            break

    assert not problems, (
        "BUG (document store atomicity): conditional find_one_and_update is not atomic on "
        "the FerretDB v1 SQLite handler the tests use (FerretDB issue #3040: the SQLite "
        "handler queries, then updates by _id, outside a transaction); "
        "authnode/repositories/sessions.py::rotate and email_tokens.py::consume rely on it. "
        "Guard each race with an insert whose _id is the spent token (a primary-key insert "
        "is atomic there), or run FerretDB on a backend where it is atomic:\n  "
        + "\n  ".join(problems))
