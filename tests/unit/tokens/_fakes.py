"""In-memory stand-ins shared by the token unit tests."""

from __future__ import annotations

import time
from typing import Any

import anyio

from authnode.errors import Unavailable


class FakeClock:
    """A settable ``time.time`` replacement, starting at the real time (whole seconds) so
    tokens it stamps also pass third-party checks that use the real clock."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryKeyStore:
    """Behaves like SigningKeyRepository: unique kid and generation, newest first."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.newest_calls = 0
        self.insert_calls = 0
        self.down = False
        self.read_delay_s = 0.0

    async def insert(self, doc: dict[str, Any]) -> bool:
        self.insert_calls += 1
        if self.down:
            raise Unavailable("MongoDB")
        await anyio.lowlevel.checkpoint()
        if any(d["_id"] == doc["_id"] or d["generation"] == doc["generation"]
               for d in self.docs):
            return False
        self.docs.append(dict(doc))
        return True

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        self.newest_calls += 1
        if self.down:
            raise Unavailable("MongoDB")
        if self.read_delay_s:
            await anyio.sleep(self.read_delay_s)
        else:
            await anyio.lowlevel.checkpoint()
        ordered = sorted(self.docs, key=lambda d: d["generation"], reverse=True)
        return [dict(d) for d in ordered[:limit]]
