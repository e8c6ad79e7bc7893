"""Stopping the HTTP server without failing a request that a client is making.

On shutdown hypercorn closes its listener, closes every idle keep-alive connection at
once, and answers the requests in flight without ``Connection: close`` (then closes those
connections too). Under load a client often sends its next request on a keep-alive
connection at the very moment it is closed: it gets a reset or an empty answer, and cannot
tell whether the request ran. Measured with two processes on one port and a SIGTERM to one
of them, that failed a request in about 2 runs of 5.

Two changes make the stop invisible to clients, provided another process serves the same
port (SO_REUSEPORT) or a proxy opens new connections elsewhere:

* :class:`CloseConnectionsWhenStopping`: once the stop has begun, every response says
  ``Connection: close``, so the client reads it and opens a new connection, which the
  kernel gives to a listener that is still open;
* :func:`linger_idle_connections`: an idle connection is closed at its usual keep-alive
  timeout (``KEEP_ALIVE_TIMEOUT_S``), not at the instant the stop begins; a request
  arriving meanwhile is served, with ``Connection: close``. So a stop never closes a
  connection under a client sooner than normal operation would. The price: a process
  whose clients hold idle connections takes up to that timeout to exit (hypercorn's
  ``graceful_timeout``, our ``SHUTDOWN_TIMEOUT_MS``, still bounds it).

A first version closed idle connections after 1 s of silence once stopping; on a loaded
machine a client's next request could take that long to reach the server, and 1 run in 6
still failed a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypercorn.asyncio import run as hypercorn_run
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)


class CloseConnectionsWhenStopping:
    """ASGI middleware: ``Connection: close`` on every HTTP response once ``stopping()``."""

    def __init__(self, app: ASGIFramework, stopping: Callable[[], bool]) -> None:
        self.app = app
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and self.stopping():
                headers = [(name, value) for name, value in message.get("headers", ())
                           if name.lower() != b"connection"]
                message["headers"] = [*headers, (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, send_closing)


class _LingeringTCPServer(TCPServer):
    async def _idle_timeout(self) -> None:
        # hypercorn's version also returns as soon as the stop begins.
        await asyncio.sleep(self.config.keep_alive_timeout)
        await asyncio.shield(self._initiate_server_close())


def linger_idle_connections() -> None:
    """Make hypercorn's asyncio server close idle connections as described above (it
    looks ``TCPServer`` up in this module for every new connection). Idempotent."""
    hypercorn_run.TCPServer = _LingeringTCPServer  # type: ignore[attr-defined]
