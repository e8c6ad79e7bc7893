"""FerretDB v1 (MongoDB wire protocol) on PostgreSQL (the default) or SQLite.

PostgreSQL is FerretDB's main backend and the one to deploy; on this machine it also spends
a fraction of SQLite's CPU per operation (bench/README.md). ``AUTHNODE_TEST_FERRETDB_HANDLER``
(``postgresql`` or ``sqlite``) chooses for the test suite, ``make run`` and the bench.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pymongo
import pymongo.errors

from ._util import (
    HOST,
    ServiceError,
    find_executable,
    port_is_listening,
    spawn,
    stop_process,
    tail,
    wait_until,
)

HANDLER_VARIABLE = "AUTHNODE_TEST_FERRETDB_HANDLER"
HANDLERS = ("postgresql", "sqlite")
POSTGRESQL_DATABASE = "ferretdb"  # FerretDB's own database beside the job queue's
# FerretDB's pool to PostgreSQL (its default is 50): it shares the server's
# max_connections (200 here) with the job queue's pools of every authnode the tests start,
# and two cores never keep more than a few of its connections busy.
POSTGRESQL_POOL_MAX_CONNS = 20


def with_pool_limit(postgresql_url: str) -> str:
    """The URL with ``pool_max_conns`` (FerretDB's pgx pool) unless it has one."""
    if "pool_max_conns=" in postgresql_url:
        return postgresql_url
    joiner = "&" if "?" in postgresql_url else "?"
    return f"{postgresql_url}{joiner}pool_max_conns={POSTGRESQL_POOL_MAX_CONNS}"


def ferretdb_handler() -> str:
    """The backend chosen by ``AUTHNODE_TEST_FERRETDB_HANDLER``; PostgreSQL by default."""
    handler = os.environ.get(HANDLER_VARIABLE, "").strip().lower() or "postgresql"
    if handler not in HANDLERS:
        raise ServiceError(f"{HANDLER_VARIABLE}={handler!r}: expected one of "
                           f"{', '.join(HANDLERS)}")
    return handler


def ferretdb_bin() -> str:
    """$FERRETDB_BIN, $GOBIN/ferretdb, $(go env GOPATH)/bin/ferretdb (default ~/go), $PATH."""
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    candidates = [Path(p) / "bin" / "ferretdb" for p in gopath.split(os.pathsep) if p]
    if os.environ.get("GOBIN"):
        candidates.insert(0, Path(os.environ["GOBIN"]) / "ferretdb")
    candidates.append(Path("/root/go/bin/ferretdb"))
    return find_executable("ferretdb", *candidates, env_var="FERRETDB_BIN")


class FerretDB:
    """FerretDB on 127.0.0.1:`port`, state in `dir`. Restartable (data kept).

    ``postgresql_url``: the PostgreSQL database that holds FerretDB's data (a database of
    its own: FerretDB's tables never share one with the job queue's); without it, SQLite
    files in `dir`."""

    def __init__(self, port: int, dir: Path | str, host: str = HOST, *,
                 postgresql_url: str | None = None) -> None:
        self.port = port
        self.postgresql_url = postgresql_url
        self.postgres_starts_seen = 0  # PostgresServer.starts when this server last started
        self.host = host
        self.dir = Path(dir)
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "ferretdb.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<FerretDB {self.handler} 127.0.0.1:{self.port} {state}>"

    @property
    def handler(self) -> str:
        return "postgresql" if self.postgresql_url else "sqlite"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    def uri_for(self, database: str) -> str:
        """A URI naming `database` as the default database."""
        return f"mongodb://{self.host}:{self.port}/{database}"

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def command_line(self) -> list[str]:
        if self.postgresql_url:
            backend = ["--handler=postgresql",
                       f"--postgresql-url={with_pool_limit(self.postgresql_url)}"]
        else:
            backend = ["--handler=sqlite", f"--sqlite-url=file:{self.data_dir}/"]
        return [
            ferretdb_bin(),
            *backend,
            f"--listen-addr={self.host}:{self.port}",
            f"--state-dir={self.dir}",
            "--telemetry=disable",
            "--debug-addr=-",  # "-" turns off the debug HTTP listener (default 127.0.0.1:8088)
            "--log-level=error",
        ]

    def spawn(self, detach: bool = False) -> None:
        if self.is_running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(self.command_line(), self.log_path, cwd=self.dir, detach=detach)

    def ping(self, timeout: float = 1.0) -> bool:
        ms = int(timeout * 1000)
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.uri,
            serverSelectionTimeoutMS=ms,
            connectTimeoutMS=ms,
            socketTimeoutMS=ms,
            directConnection=True,
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()
        return True

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(f"ferretdb exited early:\n{tail(self.log_path)}")
            return port_is_listening(self.port, self.host) and self.ping()

        wait_until(ready, timeout, f"ferretdb on {self.host}:{self.port} to answer ping")

    def start(self, timeout: float = 20.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout)
        self.proc = None

    def kill(self) -> None:
        stop_process(self.proc, signal.SIGKILL)
        self.proc = None

    def restart(self, timeout: float = 20.0) -> None:
        self.stop()
        self.start(timeout)

    def drop_database(self, database: str) -> None:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=5000
        )
        try:
            client.drop_database(database)
        except pymongo.errors.PyMongoError:
            pass
        finally:
            client.close()
