"""Each contract test runs against a store's in-memory twin and its MongoDB repository
(on FerretDB), so the twins the fast tests use cannot drift from what production does.

The ``mongo`` side is marked ``mongo_store``: ``make test-fast`` deselects it and runs
the twins alone, with no server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from authnode.clients.mongo import MongoHandles, create_mongo
from authnode.settings import load_settings
from authnode.tuning import HostResources

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECRET_KEY = "kAcnsaTZqQsDEHhvXU86dqIl3s9dUKrBlVixMWudcNYsdyi3HxEa0r45fpQcXg7V"

Store = TypeVar("Store")


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.mongo_store)])
def side(request: pytest.FixtureRequest) -> str:
    """Which side of the contract this run checks: the twin or the real store."""
    param: str = request.param
    return param


@asynccontextmanager
async def mongo_handles(request: pytest.FixtureRequest) -> AsyncIterator[MongoHandles]:
    """Handles on a fresh database of the session's FerretDB (started on first use)."""
    mongo_uri: str = request.getfixturevalue("mongo_uri")
    settings = load_settings({"MONGODB_URI": mongo_uri, "SECRET_KEY": SECRET_KEY},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    handles = create_mongo(settings)
    try:
        yield handles
    finally:
        await handles.close()


@asynccontextmanager
async def either(side: str, request: pytest.FixtureRequest, memory: Callable[[], Store],
                 mongo: Callable[[MongoHandles], Awaitable[Store]]) -> AsyncIterator[Store]:
    """The store of ``side``: ``memory()``, or ``mongo(handles)`` (which ensures its
    indexes, as ``authnode migrate`` does)."""
    if side == "memory":
        yield memory()
        return
    async with mongo_handles(request) as handles:
        yield await mongo(handles)
