"""A real local HTTP receiver for webhook tests: asyncio's own server on a free loopback
port, answering each request as its script says (a status code, or ``"hang"``: never
answer), and keeping what it received (headers, body, when)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tests.services import HOST


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic()


@dataclass
class Receiver:
    port: int = 0
    script: list[int | str] = field(default_factory=list)  # then 200 for ever
    received: list[Received] = field(default_factory=list)
    _hanging: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append(Received(method, path, headers, body, time.monotonic()))
                answer = self.script.pop(0) if self.script else 200
                if answer == "hang":
                    await self._hanging.wait()  # set at shutdown only
                    return
                writer.write(f"HTTP/1.1 {answer} X\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def running_receiver(script: list[int | str] | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(script=list(script or []))
    server = await asyncio.start_server(receiver._handle, HOST, 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        receiver._hanging.set()
        server.close()
        await server.wait_closed()
