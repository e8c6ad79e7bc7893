"""Fault 3: SIGTERM to one of two API processes sharing a port (SO_REUSEPORT), under load.

No client may see a failed request: the stopping process drains (1 s here) answering every
request with ``Connection: close`` (so clients reconnect, and the kernel sends them to
either listener), then closes its listener, and closes a keep-alive connection only after
it has been idle for a moment rather than at the instant the stop begins. It then exits 0 within
``SHUTDOWN_TIMEOUT_MS``.

One failure authnode cannot prevent: a connection the kernel has just queued on the
stopping process's listener when that listener closes is reset (Linux drops the accept
queue of a closing SO_REUSEPORT socket unless ``net.ipv4.tcp_migrate_req=1``, which moves
it to another listener of the port). Only clients that open a new connection for every
request can meet it, within moments of the SIGTERM; measured here about 1 run in 17.

So a failed request is excused only if all of these hold: it came from a client that opens
a new connection for every request; it got no HTTP answer, and the error at the bottom is
``ConnectionResetError`` or ``ConnectionRefusedError``; its ``X-Request-ID`` is in neither
process's log (authnode never read it: the connection was not accepted); and it started
between 0.5 s before the SIGTERM and the stopped process's exit. At most one per such client
is excused (``FRESH_CONNECTION_CLIENTS``): each has one connection open at a time and the
listener closes once, so a second one would be a different failure. They are printed. Where
the kernel migrates queued connections, none is excused.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import pytest

from tests.acceptance.test_accounts_support import PASSWORD, register_verified, running
from tests.faults.conftest import EnvFactory
from tests.faults.load import Load, show
from tests.harness import AuthnodeProcess
from tests.services import SmtpRecorder, free_port, wait_until

pytestmark = pytest.mark.alone

SHUTDOWN_TIMEOUT_MS = 10000
DRAIN_DELAY_S = "1"
CLIENTS = 8
FRESH_CONNECTION_CLIENTS = 3
MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")
LOAD_BEFORE_S = 3.0
LOAD_AFTER_S = 2.5


def _requests_served(process: AuthnodeProcess) -> int:
    return process.logs().count('"message":"request"')


def _kernel_migrates_queued_connections() -> bool:
    try:
        return MIGRATE_REQ.read_text().strip() == "1"
    except OSError:
        return False


def _wait_serving(process: AuthnodeProcess) -> None:
    def ready() -> bool:
        assert process.proc.poll() is None, process.logs()[-3000:]
        return '"message":"ready"' in process.logs()

    wait_until(ready, 30, f"api process {process.proc.pid} to be ready")


@pytest.mark.slow
@pytest.mark.anyio
async def test_sigterm_under_load_loses_no_request(either_env: EnvFactory, smtp: SmtpRecorder,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # With a drain delay (as every API process has: 5 s by default), each response after
    # the SIGTERM says Connection: close, so when the listener closes no client is left on
    # an idle keep-alive connection to send its next request into a closing one.
    env = either_env(SHUTDOWN_TIMEOUT_MS=str(SHUTDOWN_TIMEOUT_MS), DRAIN_DELAY_S=DRAIN_DELAY_S)
    port = free_port()
    first = env.start("api", port=port, wait=False, name="api-first")
    second = env.start("api", port=port, wait=False, name="api-second")
    try:
        _wait_serving(first)
        _wait_serving(second)
        with running(env, "worker"):
            email, _ = register_verified(second.client, smtp, prefix="sigterm")

        # Keep-alive clients (pinned to one process each) and clients that open a new
        # connection for every request (spread by the kernel over both listeners).
        load = Load([second.url], email, PASSWORD, clients=CLIENTS,
                    fresh_connections=FRESH_CONNECTION_CLIENTS, duration_s=60,
                    max_requests=20_000)
        served_by_first = 0
        exit_code: int | None = None
        exit_s = 0.0
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(load.run)
            await anyio.sleep(LOAD_BEFORE_S)  # a steady state before the stop
            served_by_first = _requests_served(first)
            signalled = time.monotonic()
            first.signal(signal.SIGTERM)
            while first.proc.poll() is None and time.monotonic() - signalled < 30:
                await anyio.sleep(0.02)
            exit_s = time.monotonic() - signalled
            exit_code = first.proc.poll()
            await anyio.sleep(LOAD_AFTER_S)  # the survivor alone carries the load
            load.stop()

        result = load.result
        after_stop = result.between(signalled)
        migrates = _kernel_migrates_queued_connections()
        logged = first.logs() + second.logs()
        exited = signalled + exit_s
        queue_resets = [] if migrates else [
            o for o in result.failed
            if o.client >= CLIENTS - FRESH_CONNECTION_CLIENTS and o.status is None
            and o.cause in ("ConnectionResetError", "ConnectionRefusedError")
            and o.request_id not in logged
            and signalled - 0.5 <= o.started <= exited]
        failed = [o for o in result.failed if o not in queue_resets]
        show(capsys, "SIGTERM to one of two API processes under load", {
            "requests (total)": len(result.outcomes),
            "requests started after SIGTERM": len(after_stop),
            "served by the stopped process before SIGTERM": served_by_first,
            "failed requests": len(failed),
            "new connections reset before they were accepted (excused)": [
                f"{o} {o.cause} at {o.started - signalled:+.3f}s" for o in queue_resets],
            "most that can be excused (one per fresh-connection client)":
                FRESH_CONNECTION_CLIENTS,
            "net.ipv4.tcp_migrate_req": int(migrates),
            "statuses": result.statuses(),
            "exit code": exit_code,
            "seconds from SIGTERM to exit": round(exit_s, 2),
            "slowest request (s)": round(result.slowest_s, 2),
        })
        assert served_by_first > 0, "the load never reached the process that was stopped"
        assert exit_code == 0, first.logs()[-4000:]
        assert exit_s < SHUTDOWN_TIMEOUT_MS / 1000, exit_s
        assert not failed, [f"{o} {o.cause}" for o in failed[:20]]
        assert len(queue_resets) <= FRESH_CONNECTION_CLIENTS, queue_resets
        assert len(after_stop) > 50
    finally:
        first.kill()
        code = second.stop()
    assert code == 0, second.logs()[-4000:]
