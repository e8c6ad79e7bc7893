"""Hostile input 6: schemathesis against the running server's ``/openapi.json``.

Every operation of the document gets ``EXAMPLES`` generated requests (Hypothesis
``max_examples``), drawn from schemathesis' positive *and* negative generation modes
(valid bodies, and bodies/parameters that break the schema). Each response must pass the
checks ``not_a_server_error``, ``response_schema_conformance``, ``status_code_conformance``
and ``content_type_conformance``.

Bearer tokens: operations that declare the ``bearer`` scheme get a valid access token on
9 of 10 calls (the 10th keeps whatever schemathesis generated, usually nothing or garbage,
so the documented 401 is exercised too). Two verified users share the work:

* ``steady`` signs the calls that cannot end its session (profile, sessions list, session
  deletion with generated ids, password change and account deletion with generated — hence
  wrong — passwords);
* ``churn`` signs ``POST /v1/auth/logout`` and ``POST /v1/auth/logout-all``: those end the
  session (or every session of the user), so after each call that succeeded (204) the next
  one gets a *fresh* token from a new login (a call that failed left the token alive).

If a generated ``current_password``/``password`` ever matched (it cannot: the users'
passwords are random and not in the document), ``steady``'s token would die and later
calls would show up as unexpected 401s, so the run checks the token still works at the end.

One Redis mode (single) bounds the time; the run is marked slow. Failures are collected,
not raised on the first one, so the report lists every (operation, check, status) at fault
with a count and one reproducing curl command.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.acceptance.test_accounts_support import bearer, login, register_verified
from tests.harness import AuthnodeEnv
from tests.services import SmtpRecorder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("redis_target", ["single"], indirect=True),
]

EXAMPLES = 200
REQUEST_TIMEOUT_S = 15.0
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
SESSION_ENDING = {("POST", "/v1/auth/logout"), ("POST", "/v1/auth/logout-all")}
# The operations the contract (issue 3) lists; the document must have every one of them.
EXPECTED_OPERATIONS = {
    ("POST", "/v1/auth/register"), ("POST", "/v1/auth/verify-email"),
    ("POST", "/v1/auth/verify-email/resend"), ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"), ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/logout-all"), ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions/{session_id}"), ("POST", "/v1/auth/password/forgot"),
    ("POST", "/v1/auth/password/reset"), ("POST", "/v1/auth/password/change"),
    ("GET", "/v1/users/me"), ("PATCH", "/v1/users/me"), ("DELETE", "/v1/users/me"),
    ("GET", "/.well-known/jwks.json"),
}


class Tally:
    """Requests, statuses and check failures of one operation."""

    def __init__(self) -> None:
        self.requests = 0
        self.statuses: Counter[int] = Counter()
        self.failures: Counter[tuple[str, int]] = Counter()
        self.examples: dict[tuple[str, int], str] = {}
        self.transport_errors: Counter[str] = Counter()
        self.seconds = 0.0


def _is_secured(operation: Any) -> bool:
    security = operation.definition.raw.get("security")
    return bool(security)


def _record_failures(tally: Tally, failures: list[Failure], status: int, curl: str) -> None:
    for failure in failures:
        key = (failure.title, status)
        tally.failures[key] += 1
        tally.examples.setdefault(key, f"{failure.message.strip()[:300]}\n    {curl[:600]}")


class Tokens:
    """The bearer token for one operation's calls; ``spent()`` after a call that ended
    the session makes the next call log in again."""

    def __init__(self, mint: Callable[[], str]) -> None:
        self._mint = mint
        self._token: str | None = None
        self.minted = 0

    def get(self) -> str:
        if self._token is None:
            self._token = self._mint()
            self.minted += 1
        return self._token

    def spent(self) -> None:
        self._token = None


def _fuzz_operation(operation: Any, base_url: str, http: requests.Session,
                    tokens: Tokens | None, ends_session: bool, tally: Tally) -> None:
    strategy = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                         operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                         derandomize=True, phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @given(case=strategy, auth_draw=st.integers(0, 9))
    def run(case: Any, auth_draw: int) -> None:
        headers: dict[str, str] = {}
        if tokens is not None and auth_draw != 0:
            headers.update(bearer(tokens.get()))
        tally.requests += 1
        try:
            response = case.call(base_url=base_url, session=http, headers=headers,
                                 timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as error:
            tally.transport_errors[type(error).__name__] += 1
            return
        tally.statuses[response.status_code] += 1
        if ends_session and tokens is not None and response.status_code < 300:
            tokens.spent()
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            _record_failures(tally, list(group.exceptions), response.status_code,
                             case.as_curl_command(headers=headers, base_url=base_url))
        except Failure as failure:
            _record_failures(tally, [failure], response.status_code,
                             case.as_curl_command(headers=headers, base_url=base_url))

    run()


def test_every_operation_survives_fuzzing(authnode_env: AuthnodeEnv,
                                          smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(LOGIN_ACCOUNT_LIMIT="100000/15m",
                                      LOGIN_ACCOUNT_TOTAL_LIMIT="100000/1h")
    server = env.start("all")
    try:
        _run(server.url, server.client, smtp)
    finally:
        server.kill()


def _run(base_url: str, client: Any, smtp: SmtpRecorder) -> None:
    steady_password = "steady " + secrets.token_urlsafe(12)
    churn_password = "churn " + secrets.token_urlsafe(12)
    steady_email, _ = register_verified(client, smtp, password=steady_password,
                                        prefix="fuzz-steady")
    churn_email, _ = register_verified(client, smtp, password=churn_password,
                                       prefix="fuzz-churn")
    steady = Tokens(lambda: str(login(client, steady_email, steady_password)["access_token"]))
    churn = Tokens(lambda: str(login(client, churn_email, churn_password)["access_token"]))

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=10)
    operations = []
    for result in schema.get_all_operations():
        operations.append(result.ok())  # an Err here means the document itself is broken
    found = {(op.method.upper(), op.path) for op in operations}
    missing = EXPECTED_OPERATIONS - found
    assert not missing, f"operations of the contract missing from /openapi.json: {missing}"

    tallies: dict[str, Tally] = defaultdict(Tally)
    started = time.monotonic()
    with requests.Session() as http:
        for operation in operations:
            ends_session = (operation.method.upper(), operation.path) in SESSION_ENDING
            tokens = None if not _is_secured(operation) else churn if ends_session else steady
            tally = tallies[operation.label]
            op_started = time.monotonic()
            _fuzz_operation(operation, base_url, http, tokens, ends_session, tally)
            tally.seconds = time.monotonic() - op_started
    elapsed = time.monotonic() - started

    me = client.get("/v1/users/me", headers=bearer(steady.get()))
    assert steady.minted == 1, "the steady token was minted again"
    assert me.status_code == 200, f"the steady token died during fuzzing: {me.status_code} " \
                                  f"{me.text[:200]}"

    total: Counter[int] = Counter()
    print(f"\nschema fuzzing: {len(operations)} operations, {elapsed:.1f}s, "
          f"{churn.minted} fresh logins for the session-ending operations")
    print(f"  {'operation':<42} {'requests':>8} {'secs':>6}  statuses")
    for label, tally in tallies.items():
        total.update(tally.statuses)
        histogram = " ".join(f"{code}:{n}" for code, n in sorted(tally.statuses.items()))
        print(f"  {label:<42} {tally.requests:>8} {tally.seconds:>6.1f}  {histogram}")
    print("  status histogram (all operations): "
          + " ".join(f"{code}:{n}" for code, n in sorted(total.items())))

    short = {label: t.requests for label, t in tallies.items() if t.requests < EXAMPLES}
    print(f"  operations that got fewer than {EXAMPLES} requests (Hypothesis exhausted their "
          f"small input space): {short}")

    problems: list[str] = []
    undocumented: dict[str, set[int]] = defaultdict(set)
    server_errors: dict[str, dict[int, int]] = {}
    for label, tally in tallies.items():
        for error, count in tally.transport_errors.items():
            problems.append(f"{label}: {count} transport error(s) {error}")
        errors = {code: n for code, n in tally.statuses.items() if code >= 500}
        if errors:
            server_errors[label] = errors
        for (title, status), count in sorted(tally.failures.items()):
            problems.append(f"{label}: {count}x [{title}] status {status}\n    "
                            f"{tally.examples[(title, status)]}")
            if title == "Undocumented status code":
                undocumented[label].add(status)
    print(f"  5xx responses: {sum(total[code] for code in total if code >= 500)} "
          f"{server_errors}; check failures: "
          f"{sum(sum(t.failures.values()) for t in tallies.values())}")
    if undocumented:
        print("  undocumented statuses per operation (document them in the OpenAPI, or fix "
              "the 5xx):")
        for label, statuses in sorted(undocumented.items()):
            print(f"    {label}: {sorted(statuses)}")
    for problem in problems:
        print("  FAIL " + problem)
    assert len(server_errors) + len(problems) == 0, (
        f"schema fuzzing: 5xx responses {server_errors} (expected none: no input may cause "
        f"a 5xx); undocumented statuses "
        f"{ {label: sorted(v) for label, v in sorted(undocumented.items())} }; "
        f"{len(problems)} finding(s) in all (printed above with a curl for each)")
