"""Real servers for the test suite, each a subprocess (or thread) on a free loopback port.

All of them bind 127.0.0.1 only, keep their files in a folder the caller chooses, are
restartable on the same port (for fault tests), and wait for readiness with deadlines.
`tests/conftest.py` turns them into session fixtures; `run_local` runs them for
`scripts/run.sh` on the default ports.
"""

from ._util import (
    HOST,
    ServiceError,
    WaitTimeout,
    free_port,
    free_port_with_offset,
    port_is_listening,
    wait_until,
    wait_until_async,
)
from .ferretdb import (
    POSTGRESQL_DATABASE,
    POSTGRESQL_POOL_MAX_CONNS,
    FerretDB,
    ferretdb_handler,
)
from .oidc_provider import OidcProviderServer
from .postgres_server import PostgresServer
from .redis_server import RedisCluster, RedisServer, RedisTarget, async_client, parse_startup_nodes
from .smtp import RecordedMessage, SmtpRecorder

__all__ = [
    "HOST",
    "POSTGRESQL_DATABASE",
    "POSTGRESQL_POOL_MAX_CONNS",
    "FerretDB",
    "OidcProviderServer",
    "PostgresServer",
    "RecordedMessage",
    "RedisCluster",
    "RedisServer",
    "RedisTarget",
    "ServiceError",
    "SmtpRecorder",
    "WaitTimeout",
    "async_client",
    "ferretdb_handler",
    "free_port",
    "free_port_with_offset",
    "parse_startup_nodes",
    "port_is_listening",
    "wait_until",
    "wait_until_async",
]
