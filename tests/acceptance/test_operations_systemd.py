"""systemd's notify protocol, spoken by the real ``authnode serve`` to a socket the test
listens on (as systemd does for ``Type=notify``): ``READY=1`` only once the process
answers ready, ``WATCHDOG=1`` pings every ``WATCHDOG_USEC / 2``, ``STOPPING=1`` on
SIGTERM, then exit code 0.

One Redis mode is enough here: the protocol does not depend on it.
"""

from __future__ import annotations

import secrets
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import RedisServer, RedisTarget, free_port, wait_until


class NotifyListener:
    """A unix datagram socket standing in for systemd's ``$NOTIFY_SOCKET``."""

    def __init__(self, *, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"authnode-test-notify-{secrets.token_hex(6)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
            self._folder: Path | None = None
        else:  # a short path: unix socket paths are limited to 107 bytes
            self._folder = Path(tempfile.mkdtemp(prefix="an-notify-", dir="/tmp"))
            self.address = str(self._folder / "notify")
            self.sock.bind(self.address)
        self.received: list[tuple[float, str]] = []

    def close(self) -> None:
        self.sock.close()
        if self._folder is not None:
            Path(self.address).unlink(missing_ok=True)
            self._folder.rmdir()

    def _receive(self, until: float) -> bool:
        remaining = until - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return False
        for line in data.decode().splitlines():
            self.received.append((time.monotonic(), line))
        return True

    def messages(self) -> list[str]:
        return [message for _, message in self.received]

    def wait_for(self, message: str, timeout: float, count: int = 1) -> float:
        """Until ``message`` has arrived ``count`` times; the time of the last one."""
        deadline = time.monotonic() + timeout
        while True:
            times = [at for at, got in self.received if got == message]
            if len(times) >= count:
                return times[count - 1]
            if not self._receive(deadline):
                raise AssertionError(f"{message!r} x{count} not received in {timeout}s; "
                                     f"got {self.messages()}")

    def collect(self, seconds: float) -> None:
        """Everything that arrives within ``seconds`` (for checking that nothing does)."""
        deadline = time.monotonic() + seconds
        while self._receive(deadline):
            pass


@pytest.fixture
def redis_target(redis_single: RedisServer) -> RedisTarget:
    if not redis_single.is_running:
        redis_single.start()
    redis_single.flushall()
    return RedisTarget(mode="single", url=redis_single.url, server=redis_single)


@pytest.fixture
def notify(request: pytest.FixtureRequest) -> Iterator[NotifyListener]:
    """An abstract socket (``@name``), or a path with ``@pytest.mark.parametrize("notify",
    ["path"], indirect=True)``: systemd uses either."""
    listener = NotifyListener(abstract=getattr(request, "param", "abstract") == "abstract")
    yield listener
    listener.close()


def start(env: AuthnodeEnv, role: str, notify: NotifyListener, **extra: str) -> AuthnodeProcess:
    args: list[str] = []
    if "metrics_bind" in extra:
        args = ["--metrics-bind", extra.pop("metrics_bind")]
    return env.start(role, wait=False, extra_args=args,
                     extra_env={"NOTIFY_SOCKET": notify.address, **extra})


def stop_and_expect_stopping(process: AuthnodeProcess, notify: NotifyListener) -> None:
    process.signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1", 15)
    code = process.proc.wait(30)
    assert code == 0, process.logs()[-4000:]
    assert notify.messages().count("READY=1") == 1


@pytest.mark.parametrize("notify", ["abstract", "path"], indirect=True)
def test_ready_when_ready_then_watchdog_then_stopping(authnode_env: AuthnodeEnv,
                                                      notify: NotifyListener) -> None:
    process = start(authnode_env, "all", notify, WATCHDOG_USEC="2000000")
    try:
        ready_at = notify.wait_for("READY=1", 60)
        # At the moment READY=1 arrives the process already answers ready.
        assert httpx.get(process.url + "/readyz", timeout=5).status_code == 200
        assert notify.messages()[0] == "READY=1", notify.messages()
        # WATCHDOG_USEC=2 s: a ping every second from READY on, so the third one comes
        # about 2 s after READY (times are when the test read them: a lower bound only
        # for the ones read while waiting, hence no check of each interval).
        third = notify.wait_for("WATCHDOG=1", 10, count=3)
        assert 1.5 <= third - ready_at <= 6, (ready_at, notify.received)
        stop_and_expect_stopping(process, notify)
        assert '"message":"stopped"' in process.logs()
    finally:
        process.kill()


def test_ready_waits_for_a_dependency(authnode_env: AuthnodeEnv, notify: NotifyListener,
                                      redis_single: RedisServer) -> None:
    """With Redis down the API serves 503 on /readyz and says nothing to systemd; READY=1
    comes only once Redis answers."""
    redis_single.stop()
    process: AuthnodeProcess | None = None
    try:
        process = start(authnode_env, "all", notify)
        running = process
        wait_until(lambda: "waiting for dependencies" in running.logs(), 60,
                   "authnode to report the missing dependency")
        response = wait_until(lambda: httpx.get(running.url + "/readyz", timeout=5), 30,
                              "the API to listen")
        assert response.status_code == 503
        assert "redis" in response.json()["status"]
        assert "READY=1" not in notify.messages()
        notify.collect(0.5)
        assert "READY=1" not in notify.messages(), notify.messages()
        redis_single.start()
        notify.wait_for("READY=1", 30)
        assert httpx.get(process.url + "/readyz", timeout=5).status_code == 200
        stop_and_expect_stopping(process, notify)
    finally:
        if process is not None:
            process.kill()
        if not redis_single.is_running:
            redis_single.start()


def test_worker_is_ready_with_its_metrics_port_and_respects_watchdog_pid(
        authnode_env: AuthnodeEnv, notify: NotifyListener) -> None:
    """The worker unit's shape: READY=1 once its metrics port answers. WATCHDOG_PID names
    another process here, so this one must not ping (systemd sets it for the main PID)."""
    metrics_port = free_port()
    process = start(authnode_env, "worker", notify, metrics_bind=f"127.0.0.1:{metrics_port}",
                    WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    try:
        notify.wait_for("READY=1", 60)
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scrape.status_code == 200
        assert "authnode_jobs_processed_total" in scrape.text or \
            "authnode_job_queue_depth" in scrape.text
        notify.collect(1.0)  # ten intervals of 0.1 s
        assert "WATCHDOG=1" not in notify.messages(), notify.messages()
        stop_and_expect_stopping(process, notify)
    finally:
        process.kill()
