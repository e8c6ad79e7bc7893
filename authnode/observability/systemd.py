"""systemd's notify protocol: READY=1, STOPPING=1 and WATCHDOG=1 on ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import os
import socket

import anyio


def _address(raw: str) -> str:
    # A leading "@" names a Linux abstract socket, written with a NUL byte.
    return "\0" + raw[1:] if raw.startswith("@") else raw


def notify(state: str, *, environ: dict[str, str] | None = None) -> bool:
    """Send one state line; False when not run under systemd (no socket) or on error."""
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(_address(path))
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half of ``WatchdogSec=`` (systemd passes it as WATCHDOG_USEC), or None if unset."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def keep_watchdog_fed(interval_s: float) -> None:
    while True:
        notify("WATCHDOG=1")
        await anyio.sleep(interval_s)
