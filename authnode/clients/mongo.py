"""The MongoDB client, its pool settings, and the primary / secondaryPreferred handles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient, ReadPreference
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import ConnectionPoolListener
from pymongo.uri_parser import parse_uri

from authnode.settings import Settings

Document = dict[str, Any]

SERVER_SELECTION_TIMEOUT_MS = 3000
CONNECT_TIMEOUT_MS = 2000
SOCKET_TIMEOUT_MS = 10000


@dataclass(frozen=True)
class MongoHandles:
    """``primary`` for writes and reads that must be fresh; ``replica`` for reads that
    tolerate replica lag (the seed's read/write split, ``secondaryPreferred``).

    Both set their read preference explicitly: a ``readPreference`` in ``MONGODB_URI``
    becomes the client's default, and must never send a refresh, a revocation check or
    an email-link lookup to a lagging secondary."""

    client: AsyncMongoClient[Document]
    primary: AsyncDatabase[Document]
    replica: AsyncDatabase[Document]

    async def close(self) -> None:
        await self.client.close()


def database_name(mongodb_uri: str) -> str:
    return parse_uri(mongodb_uri).get("database") or "authnode"


def create_mongo(settings: Settings, *,
                 event_listeners: Sequence[ConnectionPoolListener] = ()) -> MongoHandles:
    """``event_listeners``: pymongo monitoring listeners (metrics count pool use)."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.mongodb_uri,
        maxPoolSize=settings.db_pool_size,
        minPoolSize=settings.db_min_pool_size,
        maxIdleTimeMS=settings.db_max_idle_time_ms or None,
        waitQueueTimeoutMS=settings.db_wait_queue_timeout_ms,
        serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
        connectTimeoutMS=CONNECT_TIMEOUT_MS,
        socketTimeoutMS=SOCKET_TIMEOUT_MS,
        tz_aware=True,
        appname="authnode",
        connect=False,
        event_listeners=list(event_listeners),
    )
    name = database_name(settings.mongodb_uri)
    primary = client.get_database(name, read_preference=ReadPreference.PRIMARY)
    replica = client.get_database(name, read_preference=ReadPreference.SECONDARY_PREFERRED)
    return MongoHandles(client=client, primary=primary, replica=replica)
