"""Is each dependency answering? One set of probes for ``/readyz`` and ``authnode check``.

(:mod:`authnode.budget` asks the same servers a different question: how many connections
they have free.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from authnode.clients.mongo import Document
    from authnode.clients.redis import RedisClient

Probe = Callable[[], Awaitable[object]]
PROBE_TIMEOUT_S = 2.0


def dependency_probes(mongo: AsyncDatabase[Document], redis: RedisClient,
                      postgresql: Probe) -> dict[str, Probe]:
    """A ping of MongoDB and Redis, and ``postgresql`` (a ``SELECT 1`` through whatever
    connection the caller holds: the job queue's pool, or a plain connection)."""

    async def mongodb() -> object:
        return await mongo.command("ping")

    async def redis_ping() -> object:
        return await redis.ping()

    return {"mongodb": mongodb, "redis": redis_ping, "postgresql": postgresql}


async def run_probes(probes: Mapping[str, Probe]) -> dict[str, dict[str, str]]:
    """Run every probe at once, each bounded by a timeout; never raises."""
    results: dict[str, dict[str, str]] = {}

    async def run(name: str, probe: Probe) -> None:
        try:
            with anyio.fail_after(PROBE_TIMEOUT_S):
                await probe()
        except TimeoutError:
            results[name] = {"status": "down", "error": "timed out"}
        except Exception as error:
            results[name] = {"status": "down", "error": type(error).__name__}
        else:
            results[name] = {"status": "up"}

    async with anyio.create_task_group() as tasks:
        for name, probe in probes.items():
            tasks.start_soon(run, name, probe)
    return {name: results[name] for name in probes}
