"""Hostile input 8: neither the answer nor its timing tells whether an address has an account.

Against a real API process (single Redis mode: the question is about the request path, not
the Redis topology), for login (unknown address vs known verified address with a wrong
password), register (new address vs existing one) and forgot (unknown vs existing):

* ``ROUNDS`` independent rounds of ``SAMPLES`` requests of each kind, **interleaved** (each
  pair in random order, so slow drifts of the machine hit both kinds alike), after
  ``WARMUP`` pairs that are not counted;
* every status and body identical across the two kinds (and the same header names);
* the time the server spent on each request, read from its access log (``duration_ms``,
  matched by the ``X-Request-ID`` the test sends): a flow fails if the difference of the
  median durations is ``MAX_MEDIAN_DIFF_MS`` or more in **every** round.

Why this shape: on two shared, busy cores one comparison of client-side medians against
5 ms is about two standard errors, so it failed now and then with no leak at all. The
server-side duration leaves out the client's and the network's share of the noise, and a
random excursion has to repeat in every independent round to fail the test. A real leak
does repeat: a missing dummy hash costs tens of milliseconds on every request of one kind,
far above the limit in each round. Client-side medians are printed beside the server's.

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

import json
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
from tests.harness import AuthnodeEnv, AuthnodeProcess, unique_email
from tests.services import SmtpRecorder, wait_until

pytestmark = [
    pytest.mark.alone,
    pytest.mark.slow,
    pytest.mark.parametrize("redis_target", ["single"], indirect=True),
]

ROUNDS = 3
SAMPLES = 70
WARMUP = 5
MAX_MEDIAN_DIFF_MS = 5.0
HIGH_LIMITS = {
    "LOGIN_ACCOUNT_LIMIT": "100000/15m",
    "LOGIN_ACCOUNT_TOTAL_LIMIT": "100000/1h",
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
    client_ms: list[float] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    answers: set[tuple[int, bytes]] = field(default_factory=set)
    header_names: set[frozenset[str]] = field(default_factory=set)


@dataclass
class Round:
    unknown: Side
    known: Side

    @property
    def difference_ms(self) -> float:
        """Median server-side duration, unknown minus known."""
        return statistics.median(self.unknown.server_ms) - statistics.median(self.known.server_ms)

    def describe(self) -> str:
        a, b = self.unknown, self.known
        client = statistics.median(a.client_ms) - statistics.median(b.client_ms)
        return (f"server median unknown {statistics.median(a.server_ms):7.2f} ms | known "
                f"{statistics.median(b.server_ms):7.2f} ms | difference "
                f"{self.difference_ms:+6.2f} ms || client difference {client:+6.2f} ms "
                f"(unknown {statistics.median(a.client_ms):.2f} ms) | n={len(a.server_ms)}+"
                f"{len(b.server_ms)}")


Request = Callable[[dict[str, str]], httpx.Response]


def _timed(request: Request, side: Side, record: bool) -> None:
    request_id = f"timing-{side.name}-{secrets.token_hex(6)}"
    started = time.perf_counter()
    response = request({"X-Request-ID": request_id})
    elapsed_ms = (time.perf_counter() - started) * 1000
    if record:
        side.client_ms.append(elapsed_ms)
        side.request_ids.append(request_id)
        side.answers.add((response.status_code, response.content))
        side.header_names.add(frozenset(name.lower() for name in response.headers
                                        if name.lower() not in VOLATILE_HEADERS))


def _round(unknown: Request, known: Request, rng: random.Random) -> Round:
    sides = (Side("unknown"), Side("known"))
    requests = (unknown, known)
    for index in range(WARMUP + SAMPLES):
        order = [0, 1]
        rng.shuffle(order)
        for which in order:
            _timed(requests[which], sides[which], record=index >= WARMUP)
    return Round(*sides)


def _server_durations(api: AuthnodeProcess, rounds: list[Round]) -> None:
    """Fill each side's ``server_ms`` from the access log, in the order of its requests."""
    sides = [side for one in rounds for side in (one.unknown, one.known)]
    wanted = {request_id for side in sides for request_id in side.request_ids}

    def logged() -> dict[str, float] | None:
        found: dict[str, float] = {}
        for line in api.logs().splitlines():
            if '"message":"request"' in line and '"request_id":"timing-' in line:
                record = json.loads(line)
                found[record["request_id"]] = float(record["duration_ms"])
        return found if wanted <= set(found) else None

    durations = wait_until(logged, 10, "every measured request in the access log")
    for side in sides:
        side.server_ms = [durations[request_id] for request_id in side.request_ids]


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
        _server_durations(api, [one for rounds in results.values() for one in rounds])
    finally:
        worker.kill()
        api.kill()

    print(f"enumeration timing: {ROUNDS} rounds of {SAMPLES} interleaved pairs per flow after "
          f"{WARMUP} warm-up pairs each; {POPULATION} other accounts; a flow fails if the "
          f"server-side medians differ by {MAX_MEDIAN_DIFF_MS} ms or more in every round")
    failures = []
    for flow, rounds in results.items():
        for number, one in enumerate(rounds, start=1):
            print(f"  {flow:<8} round {number}: {one.describe()}")
        for one in rounds:
            unknown, known = one.unknown, one.known
            if unknown.answers != known.answers or len(unknown.answers) != 1:
                failures.append(f"{flow}: answers differ or vary: unknown {unknown.answers} "
                                f"vs known {known.answers}")
            if unknown.header_names != known.header_names:
                failures.append(f"{flow}: header names differ: {unknown.header_names} vs "
                                f"{known.header_names}")
        differences = [one.difference_ms for one in rounds]
        if all(abs(d) >= MAX_MEDIAN_DIFF_MS for d in differences):
            failures.append(f"{flow}: server-side medians differ by "
                            f"{', '.join(f'{d:+.2f}' for d in differences)} ms in every round "
                            f"(limit {MAX_MEDIAN_DIFF_MS} ms)")
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


def _measure(client: httpx.Client, known_email: str) -> dict[str, list[Round]]:
    rng = random.Random(7)
    wrong_password = "not the password " + secrets.token_hex(4)

    def post(path: str, body: dict[str, str], headers: dict[str, str]) -> httpx.Response:
        return client.post(path, json=body, headers=headers)

    def login_unknown(headers: dict[str, str]) -> httpx.Response:
        return post("/v1/auth/login", {"email": unique_email("nobody"),
                                       "password": wrong_password}, headers)

    def login_known(headers: dict[str, str]) -> httpx.Response:
        return post("/v1/auth/login", {"email": known_email, "password": wrong_password},
                    headers)

    def register_new(headers: dict[str, str]) -> httpx.Response:
        return post("/v1/auth/register", {"email": unique_email("newcomer"),
                                          "password": "fresh " + secrets.token_hex(8)}, headers)

    def register_existing(headers: dict[str, str]) -> httpx.Response:
        return post("/v1/auth/register", {"email": known_email,
                                          "password": "fresh " + secrets.token_hex(8)}, headers)

    def forgot_unknown(headers: dict[str, str]) -> httpx.Response:
        return post("/v1/auth/password/forgot", {"email": unique_email("nobody")}, headers)

    def forgot_known(headers: dict[str, str]) -> httpx.Response:
        return post("/v1/auth/password/forgot", {"email": known_email}, headers)

    # The known password must really be wrong, and the known account must really exist.
    assert login_known({}).status_code == 401
    assert post("/v1/auth/login", {"email": known_email, "password": PASSWORD},
                {}).status_code == 200

    started = time.monotonic()
    flows = {"login": (login_unknown, login_known),
             "register": (register_new, register_existing),
             "forgot": (forgot_unknown, forgot_known)}
    # Rounds of the three flows in turn, so a slow phase of the machine falls on one round
    # of each flow rather than on every round of one.
    results: dict[str, list[Round]] = {flow: [] for flow in flows}
    for _ in range(ROUNDS):
        for flow, (unknown, known) in flows.items():
            results[flow].append(_round(unknown, known, rng))
    print(f"\n  measured in {time.monotonic() - started:.1f}s")
    return results
