"""A real load balancer: HAProxy in front of three ``authnode serve --role api``, health
checks on ``/readyz``, under a steady load of logins, refreshes and profile reads.

* A rolling replacement (what a Kubernetes rolling update does): SIGTERM one process,
  wait for it to exit, start its replacement, wait until HAProxy sends it traffic; three
  times. The drain (``DRAIN_DELAY_S``) gives HAProxy time to see ``/readyz`` 503 and stop
  sending before the listener closes: no request may fail, with HAProxy's retries off so
  that the drain, not a retry, is what is tested.
* A SIGKILL of one of the three: the only failures are requests that were in flight on it
  (HAProxy answers them 502 or closes the client's connection), and HAProxy marks it
  DOWN within its health-check window.

Loopback only; HAProxy is the Debian package (scripts/bootstrap.sh installs it).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import anyio
import pytest

from tests.acceptance.test_accounts_support import PASSWORD, register_verified, running
from tests.faults.conftest import EnvFactory
from tests.faults.load import Load, LoadResult, show
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder, free_port, wait_until

pytestmark = pytest.mark.alone

DRAIN_DELAY_S = 2
CHECK_INTERVAL_MS = 300
CHECK_FALL = 2  # DOWN after this many failed checks: 0.6 s, well inside the drain
CHECK_RISE = 1
CLIENTS = 6
SERVERS = ("api1", "api2", "api3")


@contextmanager
def _haproxy(workdir: Path, ports: dict[str, int], *,
             retries: int) -> Iterator[tuple[str, Path]]:
    """HAProxy on a free loopback port; yields (its URL, its admin socket). ``retries``:
    how often a refused connection is tried again on another server (0: never)."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    front = free_port()
    stats = workdir / "haproxy.sock"
    servers = "\n".join(f"    server {name} 127.0.0.1:{port} check"
                        for name, port in ports.items())
    config = workdir / "haproxy.cfg"
    config.write_text(f"""\
global
    maxconn 2000
    stats socket {stats} level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # With retries, a refused connection (a process that just closed its listener) is
    # tried again on another server; a request already sent is never retried.
    retries {retries}
    {"option redispatch" if retries else ""}
    # A new server connection per request: none is left idle on a process that stops.
    option http-server-close
frontend public
    bind 127.0.0.1:{front}
    default_backend api
backend api
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {CHECK_INTERVAL_MS}ms fall {CHECK_FALL} rise {CHECK_RISE}
{servers}
""")
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    log = (workdir / "haproxy.log").open("wb")
    proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_until(lambda: all(s == "UP" for s in _status(stats).values()), 15,
                   "HAProxy to see every server UP")
        yield f"http://127.0.0.1:{front}", stats
    finally:
        proc.terminate()
        proc.wait(10)


def _status(stats: Path) -> dict[str, str]:
    """Each server's status (UP, DOWN, ...) from HAProxy's admin socket."""
    if not stats.exists():
        return {}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    found = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "api" and row.get("svname") in SERVERS:
            found[row["svname"]] = row["status"].split()[0]
    return found


def _longest_pause_s(result: LoadResult) -> float:
    """The longest time during which no request completed successfully."""
    ends = sorted(o.ended for o in result.outcomes if o.ok)
    return max((b - a for a, b in pairwise(ends)), default=0.0)


def _deployment(single_env: EnvFactory) -> AuthnodeEnv:
    return single_env(DRAIN_DELAY_S=str(DRAIN_DELAY_S), SHUTDOWN_TIMEOUT_MS="10000")


def _start(env: AuthnodeEnv, name: str, port: int) -> AuthnodeProcess:
    process = env.start("api", port=port, name=name)
    process.close_client()
    return process


@pytest.mark.slow
@pytest.mark.anyio
async def test_rolling_replacement_behind_haproxy_fails_no_request(
        single_env: EnvFactory, smtp: SmtpRecorder, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = _deployment(single_env)
    ports = {name: free_port() for name in SERVERS}
    processes = {name: _start(env, name, port) for name, port in ports.items()}
    replaced: list[AuthnodeProcess] = []
    try:
        with running(env, "worker"):
            email, _ = register_verified(processes["api1"].client, smtp, prefix="haproxy")
        processes["api1"].close_client()
        # No retries: a request sent to a closed listener would fail. The drain alone
        # keeps HAProxy from sending any there.
        with _haproxy(tmp_path, ports, retries=0) as (url, stats):
            load = Load([url], email, PASSWORD, clients=CLIENTS, duration_s=90,
                        max_requests=50_000)
            steps: list[tuple[str, float]] = []
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(load.run)
                await load.wait_for_requests(50)
                for name in SERVERS:
                    old = processes[name]
                    started = time.monotonic()
                    old.signal(signal.SIGTERM)
                    while old.proc.poll() is None and time.monotonic() - started < 20:
                        await anyio.sleep(0.05)
                    assert old.proc.poll() == 0, old.logs()[-3000:]
                    replaced.append(old)
                    new = await anyio.to_thread.run_sync(_start, env, name, ports[name])
                    processes[name] = new
                    while _status(stats).get(name) != "UP":
                        assert time.monotonic() - started < 40, _status(stats)
                        await anyio.sleep(0.05)
                    steps.append((name, round(time.monotonic() - started, 2)))
                await anyio.sleep(1.0)  # the last one takes its share
                load.stop()
        result = load.result
        show(capsys, "HAProxy + 3 API processes, each replaced in turn under load", {
            "requests served": sum(1 for o in result.outcomes if o.ok),
            "failed requests": len(result.failed),
            "statuses": result.statuses(),
            "seconds per replacement (SIGTERM to new one UP)": [s[1] for s in steps],
            "longest pause without a completed request (s)":
                round(_longest_pause_s(result), 3),
            "slowest request (s)": round(result.slowest_s, 3),
        })
        assert not result.failed, [str(o) for o in result.failed[:20]]
        assert len(result.outcomes) > 200
    finally:
        for process in [*processes.values(), *replaced]:
            process.kill()


@pytest.mark.slow
@pytest.mark.anyio
async def test_sigkill_behind_haproxy_fails_only_requests_in_flight_on_it(
        single_env: EnvFactory, smtp: SmtpRecorder, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = _deployment(single_env)
    ports = {name: free_port() for name in SERVERS}
    processes = {name: _start(env, name, port) for name, port in ports.items()}
    try:
        with running(env, "worker"):
            email, _ = register_verified(processes["api1"].client, smtp, prefix="haproxy-kill")
        processes["api1"].close_client()
        # Retries as in production: new requests to the dead process, until HAProxy marks
        # it DOWN, are refused at connect and go to another server.
        with _haproxy(tmp_path, ports, retries=3) as (url, stats):
            load = Load([url], email, PASSWORD, clients=CLIENTS, duration_s=60,
                        max_requests=50_000)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(load.run)
                await load.wait_for_requests(50)
                killed_at = time.monotonic()
                processes["api2"].kill()
                while _status(stats).get("api2") != "DOWN":
                    assert time.monotonic() - killed_at < 10, _status(stats)
                    await anyio.sleep(0.02)
                down_s = time.monotonic() - killed_at
                await anyio.sleep(2.0)  # the two survivors carry the load
                load.stop()
        result = load.result
        in_flight = [o for o in result.outcomes if o.started <= killed_at <= o.ended]
        failed = result.failed
        show(capsys, "SIGKILL of one of 3 API processes behind HAProxy, under load", {
            "requests served": sum(1 for o in result.outcomes if o.ok),
            "requests in flight at the kill (on any process)": len(in_flight),
            "failed requests": len(failed),
            "failed": [str(o) for o in failed],
            "seconds until HAProxy marked it DOWN": round(down_s, 2),
            "health-check window (s)": CHECK_INTERVAL_MS * CHECK_FALL / 1000,
            "requests after the kill": len(result.between(killed_at)),
        })
        # Each failure is a request the killed process had accepted: started before the
        # kill, and HAProxy answered 502 or, on a reused client connection, closed it
        # without an answer (so the client may retry).
        assert all(o.started <= killed_at and o.status in (502, None) for o in failed), \
            [str(o) for o in failed]
        assert len(failed) <= len(in_flight)
        # Window: fall x inter, plus one interval for the check that was under way.
        assert down_s < CHECK_INTERVAL_MS * (CHECK_FALL + 1) / 1000 + 0.5, down_s
        assert len(result.between(killed_at + down_s)) > 50
    finally:
        for process in processes.values():
            process.kill()
