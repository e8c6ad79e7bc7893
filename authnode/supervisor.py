"""``serve --workers N``: N API processes sharing one port through SO_REUSEPORT.

Each child is the same command with ``--workers 1``: stateless and independent, exactly
like an API process on another host. The supervisor forwards SIGTERM/SIGINT, waits for
the children, and exits with the worst of their exit codes. A second signal is forwarded
too (each child then skips what is left of its drain delay, see authnode.runtime); a third
kills them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from authnode.settings import Settings

POLL_S = 0.2


def child_command(argv: list[str]) -> list[str]:
    args = [a for a in argv[1:]]
    cleaned: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        cleaned.append(arg)
    return [sys.executable, "-m", "authnode", *cleaned, "--workers", "1"]


def supervise(settings: Settings, role: str, argv: list[str]) -> int:
    env = dict(os.environ)
    if "PROMETHEUS_MULTIPROC_DIR" in env:
        return _supervise(settings, argv, env)
    # Our own metrics folder lives exactly as long as the children that write it.
    with tempfile.TemporaryDirectory(prefix="authnode-metrics-") as metrics_dir:
        return _supervise(settings, argv, {**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir})


def _supervise(settings: Settings, argv: list[str], env: dict[str, str]) -> int:
    command = child_command(argv)
    # Each child learns N, for the connection budget it logs (see authnode.budget).
    env["AUTHNODE_API_PROCESSES"] = str(settings.api_workers)
    children = [subprocess.Popen(command, env={**env, "AUTHNODE_PROCESS_INDEX": str(i)})
                for i in range(settings.api_workers)]
    stopping = False
    signals_received = 0

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping, signals_received
        signals_received += 1
        if signals_received > 2:
            for child in children:
                child.kill()
            return
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes: list[int] = []
    while children:
        for child in list(children):
            code = child.poll()
            if code is not None:
                children.remove(child)
                if stopping and code == -signal.SIGTERM:
                    # Still starting when we forwarded the stop (its handler was not yet
                    # installed): it stopped as asked, before serving anything.
                    code = 0
                codes.append(code)
                if not stopping and code != 0:
                    # One child failed: stop the rest so the unit restarts cleanly.
                    forward(signal.SIGTERM, None)
        time.sleep(POLL_S)
    return max(codes, default=0, key=abs)
