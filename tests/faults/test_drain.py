"""The drain for load balancers: on SIGTERM an API process says "not ready" at once and
keeps serving for ``DRAIN_DELAY_S`` before it closes its listener.

A load balancer (a Kubernetes Service, HAProxy) polls ``/readyz`` and needs a few seconds
to stop sending new connections to a process that stops. These tests send the signals to
one real ``authnode serve --role api`` and watch what a client sees: every request fired
around the SIGTERM is answered, ``/readyz`` is 503 ``draining`` during the delay, a
second signal cuts the delay short, and ``config show`` shows the per-role default.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import anyio
import httpx
import pytest

from tests.acceptance.test_accounts_support import PASSWORD, register_verified, running
from tests.faults.conftest import EnvFactory
from tests.faults.load import show
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder, wait_until

pytestmark = pytest.mark.alone

DRAIN_DELAY_S = 3.0
SHUTDOWN_TIMEOUT_MS = 10000
IN_FLIGHT_LOGINS = 10  # started just before the SIGTERM: argon2 keeps them busy
DURING_DELAY_READS = 20  # each on a new connection, spread over the delay
READ_SPACING_S = 0.1
READYZ_POLL_S = 0.1


def _fresh_client(process: AuthnodeProcess) -> httpx.AsyncClient:
    """No keep-alive: every request needs the listener to accept a new connection."""
    return httpx.AsyncClient(base_url=process.url, timeout=15,
                             limits=httpx.Limits(max_keepalive_connections=0))


async def _wait_exit(process: AuthnodeProcess, since: float, timeout_s: float) -> float:
    while process.proc.poll() is None and time.monotonic() - since < timeout_s:
        await anyio.sleep(0.02)
    return time.monotonic() - since


@pytest.mark.slow
@pytest.mark.anyio
async def test_requests_around_sigterm_are_all_answered_while_readyz_says_draining(
        single_env: EnvFactory, smtp: SmtpRecorder,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = single_env(DRAIN_DELAY_S=str(DRAIN_DELAY_S),
                     SHUTDOWN_TIMEOUT_MS=str(SHUTDOWN_TIMEOUT_MS))
    api = env.start("api", name="api-drained")
    try:
        with running(env, "worker"):
            email, _ = register_verified(api.client, smtp, prefix="drain")
        login = api.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        access = login.json()["access_token"]
        api.close_client()

        answers: list[tuple[str, float, int | str]] = []  # (request, sent at, status/error)
        readyz: list[tuple[float, int, str]] = []  # (sent at, status, body status)
        signalled = 0.0
        done = anyio.Event()

        async def call(client: httpx.AsyncClient, name: str, method: str, path: str,
                       options: dict[str, Any]) -> None:
            sent = time.monotonic()
            try:
                response = await client.request(method, path, **options)
            except httpx.HTTPError as error:
                answers.append((name, sent, type(error).__name__))
            else:
                answers.append((name, sent, response.status_code))

        async def poll_readyz(client: httpx.AsyncClient) -> None:
            while not done.is_set():
                sent = time.monotonic()
                try:
                    response = await client.get("/readyz")
                except httpx.HTTPError:
                    return  # the listener has closed
                readyz.append((sent, response.status_code, response.json()["status"]))
                await anyio.sleep(READYZ_POLL_S)

        async with _fresh_client(api) as client, anyio.create_task_group() as tasks:
            for _ in range(IN_FLIGHT_LOGINS):
                tasks.start_soon(call, client, "login", "POST", "/v1/auth/login",
                                 {"json": {"email": email, "password": PASSWORD}})
            await anyio.sleep(0.02)
            signalled = time.monotonic()
            api.signal(signal.SIGTERM)
            tasks.start_soon(poll_readyz, client)
            for _ in range(DURING_DELAY_READS):
                tasks.start_soon(call, client, "me", "GET", "/v1/users/me",
                                 {"headers": {"Authorization": f"Bearer {access}"}})
                await anyio.sleep(READ_SPACING_S)
            exit_s = await _wait_exit(api, signalled, DRAIN_DELAY_S + SHUTDOWN_TIMEOUT_MS / 1000)
            done.set()

        after = [(round(sent - signalled, 2), status, body) for sent, status, body in readyz
                 if sent > signalled]
        first_draining = next((sent for sent, status, _ in after if status == 503), None)
        failed = [(name, round(sent - signalled, 2), status) for name, sent, status in answers
                  if status != 200]
        show(capsys, f"SIGTERM with DRAIN_DELAY_S={DRAIN_DELAY_S:g} to one API process", {
            "requests fired around the SIGTERM": len(answers),
            "answered 200": sum(1 for *_, status in answers if status == 200),
            "last request sent, s after SIGTERM": round(
                max(sent for _, sent, _ in answers) - signalled, 2),
            "/readyz answers after SIGTERM (status: count)": dict(
                Counter(status for _, status, _ in after)),
            "last /readyz answer, s after SIGTERM": after[-1][0] if after else None,
            "first /readyz 503, s after SIGTERM": first_draining,
            "exit code": api.proc.poll(),
            "seconds from SIGTERM to exit": round(exit_s, 2),
        })
        requests_fired = IN_FLIGHT_LOGINS + DURING_DELAY_READS
        assert len(answers) == requests_fired and not failed, failed
        # Requests on new connections were still accepted late in the delay.
        assert max(sent for _, sent, _ in answers) - signalled > DRAIN_DELAY_S - 1.2
        assert after, "no /readyz answer after the SIGTERM"
        assert all(status == 503 and body == "draining" for _, status, body in after), after
        assert first_draining is not None and first_draining < 1.0, after
        assert api.proc.poll() == 0, api.logs()[-4000:]
        assert DRAIN_DELAY_S <= exit_s < DRAIN_DELAY_S + SHUTDOWN_TIMEOUT_MS / 1000, exit_s
    finally:
        api.kill()


@pytest.mark.slow
@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_skips_the_drain_delay(single_env: EnvFactory,
                                               second: signal.Signals) -> None:
    long_delay_s = 60
    env = single_env(DRAIN_DELAY_S=str(long_delay_s))
    api = env.start("api", name="api-second-signal")
    try:
        api.close_client()
        api.signal(signal.SIGTERM)
        draining = wait_until(
            lambda: (r := httpx.get(api.url + "/readyz", timeout=5)).status_code == 503 and r,
            10, "/readyz to answer 503 after SIGTERM")
        assert draining.json() == {"status": "draining", "checks": {}}
        # Still serving: a load balancer that has not noticed yet loses nothing.
        assert httpx.get(api.url + "/healthz", timeout=5).status_code == 200
        assert api.proc.poll() is None
        signalled = time.monotonic()
        api.signal(second)
        code = api.proc.wait(15)
        assert code == 0, api.logs()[-4000:]
        assert time.monotonic() - signalled < 15 < long_delay_s
        assert "skipping the rest of the drain delay" in api.logs()
    finally:
        api.kill()


def test_config_show_gives_the_drain_delay_default_per_role(single_env: EnvFactory) -> None:
    env = single_env()
    variables = {k: v for k, v in env.variables.items() if k != "DRAIN_DELAY_S"}
    defaults = AuthnodeEnv(variables, env.workdir)

    def shown(*args: str, environment: AuthnodeEnv = defaults) -> str:
        result = environment.run("config", "show", *args)
        assert result.returncode == 0, result.stderr
        line = next(line for line in result.stdout.splitlines()
                    if line.startswith("DRAIN_DELAY_S "))
        return " ".join(line.split())

    assert shown() == "DRAIN_DELAY_S 5.0 default"
    assert shown("--role", "worker") == "DRAIN_DELAY_S 0.0 default for --role worker"
    configured = defaults.with_overrides(DRAIN_DELAY_S="2")
    assert shown("--role", "worker", environment=configured) == \
        "DRAIN_DELAY_S 2.0 environment"


@pytest.mark.slow
def test_workers_drain_together_and_a_second_signal_reaches_them(
        single_env: EnvFactory) -> None:
    """``serve --workers 2``: the supervisor forwards SIGTERM (both processes drain) and a
    second SIGTERM too (both skip the rest of the delay and exit 0; before, the supervisor
    killed them)."""
    env = single_env(DRAIN_DELAY_S="60")
    api = env.start("api", workers=2, name="api-workers")
    try:
        api.close_client()
        # Both serving (one still starting would stop at once: it has nothing to drain).
        wait_until(lambda: api.logs().count('"message":"ready"') == 2, 30,
                   "both API processes to be ready")
        api.signal(signal.SIGTERM)
        for _ in range(6):  # new connections, spread by the kernel over both processes
            wait_until(lambda: httpx.get(api.url + "/readyz", timeout=5,
                                         headers={"Connection": "close"}).status_code == 503,
                       10, "/readyz to answer 503 after SIGTERM")
        assert api.proc.poll() is None
        signalled = time.monotonic()
        api.signal(signal.SIGTERM)
        code = api.proc.wait(20)
        assert code == 0, api.logs()[-4000:]
        assert time.monotonic() - signalled < 20
        assert api.logs().count("skipping the rest of the drain delay") == 2, api.logs()[-4000:]
    finally:
        api.kill()
