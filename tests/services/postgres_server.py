"""A real PostgreSQL server (initdb + postgres) in a folder, on 127.0.0.1 only."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from ._util import HOST, ServiceError, spawn, stop_process, tail, wait_until

SUPERUSER = "postgres"
DEFAULT_DATABASE = "authnode"


def pg_bin_dir() -> Path:
    """Directory with initdb/postgres: $PG_BIN, the newest /usr/lib/postgresql/*/bin, $PATH."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    versions = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        if (candidate / "postgres").is_file() and candidate.parent.name.isdigit():
            versions.append((int(candidate.parent.name), candidate))
    if versions:
        return max(versions)[1]
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise ServiceError("PostgreSQL server binaries not found; run scripts/bootstrap.sh")


def os_user() -> str | None:
    """OS user to run the server as: `postgres` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    return os.environ.get("AUTHNODE_PG_OS_USER", "postgres")


def traversable_by_others(path: Path) -> bool:
    """True when every ancestor of `path` is world-searchable (o+x)."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


class PostgresServer:
    """PostgreSQL on 127.0.0.1:`port` with its cluster in `dir`/data.

    trust auth, fsync off, max_connections=200, unix socket in `dir`. When run as root the
    server runs as the `postgres` OS user and `dir` is chowned to it, so `dir`'s ancestors
    must be searchable by others (create temp dirs with mode 0755).
    """

    def __init__(
        self, port: int, dir: Path | str, database: str = DEFAULT_DATABASE, host: str = HOST
    ) -> None:
        """`host`: the listen address; another one than 127.0.0.1 also admits clients of
        its subnet (pg_hba `samenet`), e.g. processes in other network namespaces."""
        self.port = port
        self.host = host
        self.dir = Path(dir)
        self.data_dir = self.dir / "data"
        self.database = database
        self.log_path = self.dir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0  # clients with pooled connections compare it to see a restart
        self._user = os_user()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<PostgresServer 127.0.0.1:{self.port} {state}>"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _prepare_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._user is None:
            return
        if not traversable_by_others(self.dir.parent):
            raise ServiceError(
                f"{self.dir.parent} is not searchable by the {self._user} OS user; "
                "put the PostgreSQL folder under a world-searchable (0755) directory"
            )
        entry = pwd.getpwnam(self._user)
        os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.dir.chmod(0o755)

    def initdb(self) -> None:
        self._prepare_dir()
        args = [
            str(pg_bin_dir() / "initdb"),
            "--pgdata", str(self.data_dir),
            "--username", SUPERUSER,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=self.dir,
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
            check=False,
        )
        if result.returncode != 0:
            out = (result.stdout + result.stderr).decode(errors="replace")
            raise ServiceError(f"initdb failed ({result.returncode}):\n{out}")
        if self.host != HOST:
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")

    def command_line(self) -> list[str]:
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
            "log_connections": "off",
        }
        args = [str(pg_bin_dir() / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def spawn(self, detach: bool = False) -> None:
        if self.is_running:
            return
        if not (self.data_dir / "PG_VERSION").exists():
            self.initdb()
        self.proc = spawn(
            self.command_line(), self.log_path, cwd=self.dir, user=self._user, detach=detach
        )

    def _connect(self, database: str = "postgres", timeout: float = 5.0) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=SUPERUSER,
            dbname=database,
            connect_timeout=max(1, int(timeout)),
            autocommit=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(f"postgres exited early:\n{tail(self.log_path)}")
            with self._connect(timeout=1) as conn:
                conn.execute("SELECT 1")
            return True

        wait_until(ready, timeout, f"postgres on 127.0.0.1:{self.port} to accept connections")

    def start(self, timeout: float = 30.0) -> None:
        """initdb on first use, start the server, wait for it, create the default database."""
        self.spawn()
        self.wait_ready(timeout)
        self.ensure_database(self.database)
        self.starts += 1

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, disconnect clients)."""
        stop_process(self.proc, signal.SIGINT, timeout)
        self.proc = None

    def kill(self) -> None:
        """Crash the postmaster (SIGKILL), for fault tests; the next start runs recovery."""
        stop_process(self.proc, signal.SIGKILL)
        self.proc = None

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    def connect(self, database: str | None = None) -> psycopg.Connection:
        """An autocommit psycopg connection as the superuser; close it when done."""
        return self._connect(database or self.database)

    def ensure_database(self, name: str) -> str:
        with self._connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (an identifier: letters, digits, _) and return its URL."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise ValueError(f"bad database name {name!r}")
        with self._connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS `name` WITH (FORCE): disconnects its clients first."""
        with self._connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
