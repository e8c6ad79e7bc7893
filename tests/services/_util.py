"""Small shared helpers: free loopback ports, deadline polling, process handling."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio

HOST = "127.0.0.1"

T = TypeVar("T")

# Ports handed out by this process. The kernel may hand the same ephemeral port out
# twice once the probing socket is closed; remembering them avoids giving two
# services of one test session the same port.
_handed_out: set[int] = set()
_lock = threading.Lock()


class ServiceError(RuntimeError):
    """A test service could not be started or stopped."""


class WaitTimeout(TimeoutError):
    """`wait_until` ran out of time."""


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1 (the kernel picks it: bind to port 0)."""
    with _lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise ServiceError("could not find a free loopback port")


def free_port_with_offset(offset: int = 10000, low: int = 15000, high: int = 22000) -> int:
    """Return a port P such that both P and P+offset are free on 127.0.0.1.

    Used for Redis Cluster nodes, whose cluster bus listens on port+10000 (so the port must
    be below 55536). The defaults keep both ports below Linux's ephemeral range (32768+), so
    outgoing connections of the test suite can never grab a bus port by accident.
    """
    with _lock:
        rng = random.SystemRandom()
        for _ in range(1000):
            port = rng.randrange(low, high)
            if port in _handed_out or port + offset in _handed_out:
                continue
            if _can_bind(port) and _can_bind(port + offset):
                _handed_out.update((port, port + offset))
                return port
    raise ServiceError(f"no free port pair (P, P+{offset}) in [{low}, {high})")


def port_is_listening(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    message: str | Callable[[], str] = "condition",
    interval: float = 0.02,
    max_interval: float = 0.25,
) -> T:
    """Poll `predicate` until it returns a truthy value and return that value.

    Exceptions raised by the predicate count as "not yet". On timeout a `WaitTimeout` is
    raised naming `message` (a string or a callable producing one) and the last exception.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ServiceError:
            raise
        except Exception as exc:
            last_exc = exc
        else:
            if result:
                return result
        now = time.monotonic()
        if now >= deadline:
            text = message() if callable(message) else message
            detail = f" (last error: {last_exc!r})" if last_exc is not None else ""
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {text}{detail}")
        time.sleep(min(interval, deadline - now))
        interval = min(interval * 1.5, max_interval)


async def wait_until_async(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    message: str | Callable[[], str] = "condition",
    interval: float = 0.02,
    max_interval: float = 0.25,
) -> T:
    """Like `wait_until`, but sleeps with anyio so the event loop keeps running."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ServiceError:
            raise
        except Exception as exc:
            last_exc = exc
        else:
            if result:
                return result
        now = time.monotonic()
        if now >= deadline:
            text = message() if callable(message) else message
            detail = f" (last error: {last_exc!r})" if last_exc is not None else ""
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {text}{detail}")
        await anyio.sleep(min(interval, deadline - now))
        interval = min(interval * 1.5, max_interval)


def tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def find_executable(name: str, *candidates: str | Path, env_var: str | None = None) -> str:
    """Locate a program: $env_var first, then explicit candidate paths, then $PATH."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    hint = f" (or set {env_var})" if env_var else ""
    raise ServiceError(f"{name} not found; run scripts/bootstrap.sh{hint}")


def stop_process(
    proc: subprocess.Popen[bytes] | None,
    sig: int = signal.SIGTERM,
    timeout: float = 10.0,
) -> None:
    """Send `sig`, wait up to `timeout`, then SIGKILL. Safe on already-exited processes."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    else:
        proc.wait()


def spawn(
    args: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    user: str | None = None,
    detach: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process with stdout+stderr appended to `log_path`.

    `detach=True` puts it in its own session so it outlives the caller (scripts/run.sh);
    test servers stay in the caller's process group so Ctrl-C reaches them too.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            start_new_session=detach,
            env=env,
        )
