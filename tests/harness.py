"""Run the real ``authnode`` binary in a subprocess against the test servers.

Acceptance, fault and security tests share this: ``AuthnodeEnv`` is the environment of one
deployment (its own MongoDB database and PostgreSQL database, a Redis target, the SMTP
recorder); ``AuthnodeProcess`` is one running ``authnode serve`` with its log file.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.services import RecordedMessage, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent

# Fast, but still at the settings' minimums (argon2 19 MiB, t=2).
TEST_DEFAULTS = {
    "LOG_LEVEL": "info",
    "SHUTDOWN_TIMEOUT_MS": "10000",
    "EMAIL_ADDRESS_LIMIT": "1000/1m",
    "REGISTER_IP_LIMIT": "100000/1h",
    "LOGIN_IP_LIMIT": "100000/15m",
    "FORGOT_IP_LIMIT": "100000/1h",
    "RESEND_IP_LIMIT": "100000/1h",
    "REFRESH_IP_LIMIT": "100000/1h",
    "STALLED_JOB_AFTER_S": "6",
    "HASH_THREADS": "2",
    # No load balancer watches /readyz here: a stop closes the listener at once. The drain
    # and HAProxy tests set their own delay.
    "DRAIN_DELAY_S": "0",
}


@dataclass
class AuthnodeEnv:
    """The settings of one deployment; every process started from it shares its state."""

    variables: dict[str, str]
    workdir: Path

    def with_overrides(self, **overrides: str) -> AuthnodeEnv:
        return AuthnodeEnv({**self.variables, **overrides}, self.workdir)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``authnode ARGS`` to completion (migrate, check, config show…)."""
        return subprocess.run([sys.executable, "-m", "authnode", *args], env=self.os_env(),
                              cwd=self.workdir, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def migrate(self) -> list[str]:
        """What ``authnode migrate`` does, run in this process: a test's setup then pays no
        Python start (about a second each, most of the suite's setup time). The command
        itself is tested as a subprocess in test_foundation.py and test_user_ids.py."""
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        from authnode.admin import migrate
        from authnode.settings import load_settings
        from authnode.tuning import read_host_resources

        settings = load_settings(self.variables, host=read_host_resources())
        # A thread of its own: the caller may be inside an event loop (an async test).
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(asyncio.run, migrate(settings)).result(timeout=60)

    def os_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AUTHNODE_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        env.update(self.variables)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, role: str = "all", *, port: int | None = None, workers: int = 1,
              extra_env: dict[str, str] | None = None, wait: bool = True,
              timeout: float = 30, name: str | None = None,
              extra_args: list[str] | None = None) -> AuthnodeProcess:
        """``extra_args`` go after ``serve`` (e.g. ``["--metrics-bind", "127.0.0.1:9101"]``)."""
        port = port or free_port()
        log_path = self.workdir / f"{name or role}-{port}-{secrets.token_hex(3)}.log"
        args = [sys.executable, "-m", "authnode", "serve", "--role", role]
        if role != "worker":
            args += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        args += extra_args or []
        env = self.os_env()
        env.update(extra_env or {})
        log_file = log_path.open("wb")
        proc = subprocess.Popen(args, env=env, cwd=self.workdir, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        process = AuthnodeProcess(proc=proc, port=port, log_path=log_path, role=role)
        if wait:
            process.wait_ready(timeout)
        return process


@dataclass
class AuthnodeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    role: str
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=30)
        return self._client

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"authnode exited {self.proc.returncode}:\n{self.logs()}")
            if self.role == "worker":
                return '"message":"ready"' in self.logs()
            try:
                return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout, f"authnode {self.role} on {self.port} to be ready")
        except TimeoutError:
            self.kill()
            raise AssertionError(f"not ready in {timeout}s; log:\n{self.logs()}") from None

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait; returns the exit code (kills after ``timeout``).

        Our own client's connection is closed first: the server keeps an idle keep-alive
        connection open until its keep-alive timeout while it stops (see api/draining)."""
        self.close_client()
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"did not stop in {timeout}s; log:\n{self.logs()}") from None
        finally:
            self.close_client()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.close_client()

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


_TOKEN = re.compile(r"token=([A-Za-z0-9_\-%.~]+)")


def link_token(message: RecordedMessage, path: str) -> str:
    """The ``token`` query parameter of the first link to ``path`` in an email."""
    for link in message.links():
        parts = urlsplit(link)
        if parts.path == path:
            return parse_qs(parts.query)["token"][0]
    raise AssertionError(f"no {path} link in {message.subject!r}: {message.links()}")


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(5)}@example.com"


def wait_for_http(predicate_url: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(predicate_url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{predicate_url} did not answer in {timeout}s")
