"""Stopping the HTTP server without failing a request that a client is making.

On shutdown hypercorn closes its listener, closes every idle keep-alive connection at
once, and answers the requests in flight without ``Connection: close`` (then closes those
connections too). Under load a client often sends its next request on a keep-alive
connection at the very moment it is closed: it gets a reset or an empty answer, and cannot
tell whether the request ran. Measured with two processes on one port and a SIGTERM to one
of them, that failed a request in about 2 runs of 5.

Two changes make the stop invisible to clients, provided another process serves the same
port (SO_REUSEPORT) or a proxy opens new connections elsewhere:

* :class:`CloseConnectionsWhenNeeded`: once the stop has begun, every response says
  ``Connection: close``, so the client reads it and opens a new connection, which the
  kernel gives to a listener that is still open (it also says so on a response that
  starts before the request body has arrived, after which hypercorn closes the
  connection too);
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
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from hypercorn.asyncio import run as hypercorn_run
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)


class CloseConnectionsWhenNeeded:
    """ASGI middleware: ``Connection: close`` on a response when the connection will not
    serve another request, so the client does not send one on it:

    * once ``stopping()``;
    * when the response starts before the request body has been received in full (an
      early 401, 413 or 408): hypercorn then closes the connection after the response
      (h11 cannot start the next request while the body is still to come), and without
      the header a client reusing the connection would fail.
    """

    def __init__(self, app: ASGIFramework, stopping: Callable[[], bool]) -> None:
        self.app = app
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_pending = _announces_body(scope["headers"])

        async def receive_tracking() -> ASGIReceiveEvent:
            nonlocal body_pending
            message = await receive()
            if message["type"] == "http.disconnect" or (
                    message["type"] == "http.request" and not message.get("more_body")):
                body_pending = False
            return message

        async def send_closing(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and (body_pending or self.stopping()):
                headers = [(name, value) for name, value in message.get("headers", ())
                           if name.lower() != b"connection"]
                message["headers"] = [*headers, (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive_tracking, send_closing)


def _announces_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        name = name.lower()
        if name == b"transfer-encoding" or (name == b"content-length"
                                            and value.strip() not in (b"", b"0")):
            return True
    return False


class _LingeringTCPServer(TCPServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_done = asyncio.Event()

    async def _read_data(self) -> None:
        try:
            await super()._read_data()
        finally:
            self._reading_done.set()  # EOF, a reset or the read timeout: no request follows

    async def _idle_timeout(self) -> None:
        # hypercorn's version returns as soon as the stop begins; this one then waits out
        # the keep-alive time, unless no request can arrive any more.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.keep_alive_timeout
        try:
            await asyncio.wait_for(self.context.terminated.wait(),
                                   self.config.keep_alive_timeout)
        except TimeoutError:
            pass
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reading_done.wait(),
                                       max(0.0, deadline - loop.time()))
        await asyncio.shield(self._initiate_server_close())


def linger_idle_connections() -> None:
    """Make hypercorn's asyncio server close idle connections as described above (it
    looks ``TCPServer`` up in this module for every new connection). Idempotent."""
    hypercorn_run.TCPServer = _LingeringTCPServer  # type: ignore[attr-defined]
