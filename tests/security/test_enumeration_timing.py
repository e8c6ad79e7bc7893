"""Hostile input 8: neither the answer nor its timing tells whether an address has an account.

Against a real API process (single Redis mode: the question is about the request path, not
the Redis topology), for login (unknown address vs known verified address with a wrong
password), register (new address vs existing one) and forgot (unknown vs existing):

* ``SAMPLES`` requests of each kind, **interleaved** (each pair in random order, so slow
  drifts of the machine hit both kinds alike), after ``WARMUP`` pairs that are not counted;
* every status and body identical across the two kinds (and the same header names);
* the difference of the median latencies under ``MAX_MEDIAN_DIFF_MS``.

This is a statistical comparison within one run, not a performance target: the medians are
printed with their difference, and the mean of the paired differences for information.

The users collection holds ``POPULATION`` other accounts (written straight into the
deployment's database, half before and half after the known account), as a deployment
in use would: a lookup whose cost depends on where, or whether, the address is found shows
up only then.

The worker is stopped once the known account is verified, so the queued emails (a
notice to the known address, nothing for unknown ones) are not sent *during* the
measurement: the worker's share of the CPU would be noise in the API's latency, not a
signal an attacker sees in the response. Rate limits are raised so no 429 interferes.
"""

from __future__ import annotations

import random
import secrets
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import argon2
import httpx
import pytest
from pymongo import MongoClient

from tests.acceptance.test_accounts_support import PASSWORD, register_verified
from tests.harness import AuthnodeEnv, unique_email
from tests.services import SmtpRecorder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("redis_target", ["single"], indirect=True),
]

SAMPLES = 200
WARMUP = 15
MAX_MEDIAN_DIFF_MS = 5.0
HIGH_LIMITS = {
    "LOGIN_ACCOUNT_LIMIT": "100000/15m",
    "LOGIN_IP_LIMIT": "1000000/15m",
    "REGISTER_IP_LIMIT": "1000000/1h",
    "FORGOT_IP_LIMIT": "1000000/1h",
    "RESEND_IP_LIMIT": "1000000/1h",
    "EMAIL_ADDRESS_LIMIT": "1000000/1m",
}
POPULATION = 300
# Per-message or per-connection: Hypercorn closes a keep-alive connection after its
# 1000th request with "Connection: close", whatever the request was.
VOLATILE_HEADERS = {"date", "x-request-id", "content-length", "connection", "keep-alive"}


@dataclass
class Side:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    answers: set[tuple[int, bytes]] = field(default_factory=set)
    header_names: set[frozenset[str]] = field(default_factory=set)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)


Request = Callable[[], httpx.Response]


def _timed(request: Request, side: Side, record: bool) -> None:
    started = time.perf_counter()
    response = request()
    elapsed_ms = (time.perf_counter() - started) * 1000
    if record:
        side.latencies_ms.append(elapsed_ms)
        side.answers.add((response.status_code, response.content))
        side.header_names.add(frozenset(name.lower() for name in response.headers
                                        if name.lower() not in VOLATILE_HEADERS))


def _compare(flow: str, unknown: Request, known: Request,
             rng: random.Random) -> tuple[Side, Side, float]:
    sides = (Side("unknown"), Side("known"))
    requests = (unknown, known)
    for index in range(WARMUP + SAMPLES):
        order = [0, 1]
        rng.shuffle(order)
        for which in order:
            _timed(requests[which], sides[which], record=index >= WARMUP)
    a, b = sides
    paired = statistics.fmean(x - y for x, y in zip(a.latencies_ms, b.latencies_ms,
                                                    strict=True))
    print(f"  {flow:<8} median unknown {a.median_ms:8.2f} ms | known {b.median_ms:8.2f} ms"
          f" | difference {a.median_ms - b.median_ms:+6.2f} ms"
          f" | mean paired difference {paired:+6.2f} ms"
          f" | n={len(a.latencies_ms)}+{len(b.latencies_ms)}")
    return a, b, a.median_ms - b.median_ms


def test_unknown_and_known_addresses_look_the_same(authnode_env: AuthnodeEnv,
                                                   smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(**HIGH_LIMITS, HASH_THREADS="1")
    api = env.start("api")
    worker = env.start("worker")
    try:
        client = httpx.Client(base_url=api.url, timeout=30)
        _populate(env, POPULATION // 2, "early")
        known_email, _ = register_verified(client, smtp, prefix="timing-known")
        _populate(env, POPULATION - POPULATION // 2, "late")
        worker.stop()
        results = _measure(client, known_email)
        client.close()
    finally:
        worker.kill()
        api.kill()

    failures = []
    for flow, (unknown, known, difference) in results.items():
        if unknown.answers != known.answers or len(unknown.answers) != 1:
            failures.append(f"{flow}: answers differ or vary: unknown {unknown.answers} vs "
                            f"known {known.answers}")
        if unknown.header_names != known.header_names:
            failures.append(f"{flow}: header names differ: {unknown.header_names} vs "
                            f"{known.header_names}")
        if abs(difference) >= MAX_MEDIAN_DIFF_MS:
            failures.append(f"{flow}: medians differ by {difference:+.2f} ms "
                            f"(limit {MAX_MEDIAN_DIFF_MS} ms): unknown "
                            f"{unknown.median_ms:.2f} ms, known {known.median_ms:.2f} ms")
    assert len(failures) == 0, "\n".join(failures)


def _populate(env: AuthnodeEnv, count: int, tag: str) -> None:
    """``count`` verified accounts, inserted directly (no Argon2 per account: the hash is
    a well-formed one of a random password, shared)."""
    now = datetime.now(UTC)
    password_hash = argon2.PasswordHasher(memory_cost=19456, time_cost=2,
                                          parallelism=1).hash(secrets.token_hex(16))
    with MongoClient(env.variables["MONGODB_URI"], serverSelectionTimeoutMS=5000) as mongo:
        mongo.get_default_database()["users"].insert_many([
            {"_id": uuid.uuid4().hex, "email": f"resident-{tag}-{index}@example.com",
             "name": None, "password_hash": password_hash, "email_verified": True,
             "disabled": False, "credential_version": 1, "created_at": now,
             "updated_at": now}
            for index in range(count)])


def _measure(client: httpx.Client, known_email: str) -> dict[str, tuple[Side, Side, float]]:
    rng = random.Random(7)
    wrong_password = "not the password " + secrets.token_hex(4)

    def post(path: str, body: dict[str, str]) -> httpx.Response:
        return client.post(path, json=body)

    def login_unknown() -> httpx.Response:
        return post("/v1/auth/login", {"email": unique_email("nobody"),
                                       "password": wrong_password})

    def login_known() -> httpx.Response:
        return post("/v1/auth/login", {"email": known_email, "password": wrong_password})

    def register_new() -> httpx.Response:
        return post("/v1/auth/register", {"email": unique_email("newcomer"),
                                          "password": "fresh " + secrets.token_hex(8)})

    def register_existing() -> httpx.Response:
        return post("/v1/auth/register", {"email": known_email,
                                          "password": "fresh " + secrets.token_hex(8)})

    def forgot_unknown() -> httpx.Response:
        return post("/v1/auth/password/forgot", {"email": unique_email("nobody")})

    def forgot_known() -> httpx.Response:
        return post("/v1/auth/password/forgot", {"email": known_email})

    # The known password must really be wrong, and the known account must really exist.
    assert login_known().status_code == 401
    assert post("/v1/auth/login", {"email": known_email, "password": PASSWORD}).status_code \
        == 200

    started = time.monotonic()
    print(f"\nenumeration timing ({SAMPLES} interleaved pairs per flow after {WARMUP} warm-up "
          f"pairs; {POPULATION} other accounts; limit {MAX_MEDIAN_DIFF_MS} ms):")
    results = {
        "login": _compare("login", login_unknown, login_known, rng),
        "register": _compare("register", register_new, register_existing, rng),
        "forgot": _compare("forgot", forgot_unknown, forgot_known, rng),
    }
    print(f"  measured in {time.monotonic() - started:.1f}s")
    return results
