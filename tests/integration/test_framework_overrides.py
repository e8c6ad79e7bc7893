"""The Hypercorn override in ``api/draining.py``: a test that fails if an upgrade of
Hypercorn breaks it (the pinned range in pyproject.toml is the one it was written for).

Stock Hypercorn closes an idle keep-alive connection the instant a stop begins, so a
client that sends its next request on it at that moment gets nothing back. With
``linger_idle_connections`` the connection stays open for its keep-alive time and the
request is answered, with ``Connection: close``. Loopback only, in one process.
"""

from __future__ import annotations

import socket

import anyio
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from authnode.api.draining import CloseConnectionsWhenNeeded, linger_idle_connections
from tests.services import free_port

KEEP_ALIVE_S = 5.0
DEADLINE_S = 10.0
REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def hello(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def read_response(stream: anyio.abc.ByteStream) -> bytes:
    data = b""
    with anyio.fail_after(DEADLINE_S):
        while b"\r\n\r\n" not in data or not data.endswith(b"ok"):
            chunk = await stream.receive()
            data += chunk
    return data


def listener_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.anyio
async def test_idle_connection_is_served_after_the_stop_begins() -> None:
    linger_idle_connections()
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.keep_alive_timeout = KEEP_ALIVE_S
    config.graceful_timeout = DEADLINE_S
    config.accesslog = None
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(CloseConnectionsWhenNeeded(hello, stop.is_set), config,
                                    shutdown_trigger=stop.wait))
        with anyio.fail_after(DEADLINE_S):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                    break
                except OSError:
                    await anyio.sleep(0.02)
        async with stream:
            await stream.send(REQUEST)
            first = await read_response(stream)
            assert first.startswith(b"HTTP/1.1 200")
            assert b"connection: close" not in first.lower()

            stop.set()
            with anyio.fail_after(DEADLINE_S):  # the stop has begun: the listener is gone
                while not listener_closed(port):
                    await anyio.sleep(0.02)
            await stream.send(REQUEST)
            second = await read_response(stream)
        assert second.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in second.lower()
