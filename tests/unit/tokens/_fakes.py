"""In-memory stand-ins shared by the token unit tests."""

from __future__ import annotations

import time
from typing import Any

import anyio

from authnode.errors import Unavailable
from authnode.repositories.memory import MemorySigningKeyStore


class FakeClock:
    """A settable ``time.time`` replacement, starting at the real time (whole seconds) so
    tokens it stamps also pass third-party checks that use the real clock."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryKeyStore(MemorySigningKeyStore):
    """The signing-key twin, with faults to inject: ``down`` (every call is a MongoDB
    outage), ``read_delay_s`` (slow reads), and call counts."""

    def __init__(self) -> None:
        super().__init__()
        self.newest_calls = 0
        self.insert_calls = 0
        self.down = False
        self.read_delay_s = 0.0

    async def insert(self, doc: dict[str, Any]) -> bool:
        self.insert_calls += 1
        if self.down:
            raise Unavailable("MongoDB")
        return await super().insert(doc)

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        self.newest_calls += 1
        if self.down:
            raise Unavailable("MongoDB")
        if self.read_delay_s:
            await anyio.sleep(self.read_delay_s)
        return await super().newest(limit)
