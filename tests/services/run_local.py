"""Run the backing services for a local authnode (used by scripts/run.sh).

    python -m tests.services.run_local start [--dir .run]   # start what is not listening yet
    python -m tests.services.run_local stop  [--dir .run]   # stop what `start` started
    python -m tests.services.run_local status

Servers run detached (they outlive this command) on the default ports, with their files,
logs and pid files under --dir. A port that already has a listener is left alone.
The SMTP server prints every message it receives to --dir/smtp.log.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ._util import HOST, ServiceError, port_is_listening, spawn, wait_until
from .ferretdb import POSTGRESQL_DATABASE, FerretDB, ferretdb_handler
from .postgres_server import PostgresServer, os_user, traversable_by_others
from .redis_server import RedisServer
from .smtp import RecordedMessage, SmtpRecorder

# name -> (default port, word expected in /proc/PID/cmdline)
SERVICES: dict[str, tuple[int, str]] = {
    "redis": (6379, "redis-server"),
    "postgres": (5432, "postgres"),
    "ferretdb": (27017, "ferretdb"),
    "smtp": (1025, "run_local"),
}


def _say(message: str) -> None:
    print(f"[run_local] {message}", flush=True)


def _pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def _postgres_dir(run_dir: Path) -> Path:
    """run_dir/postgres, unless the `postgres` OS user cannot reach it (e.g. a checkout under
    /root): then a folder under /var/tmp named after the checkout."""
    wanted = run_dir / "postgres"
    if os_user() is None or traversable_by_others(run_dir):
        return wanted
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:10]
    fallback = Path("/var/tmp") / f"authnode-run-{digest}"
    fallback.mkdir(mode=0o755, parents=True, exist_ok=True)
    fallback.chmod(0o755)
    return fallback / "postgres"


def _print_message(message: RecordedMessage) -> None:
    stamp = datetime.now().isoformat(timespec="seconds")
    lines = [
        "=" * 72,
        f"{stamp}  from {message.mail_from}  to {', '.join(message.rcpt_tos)}",
        f"Subject: {message.subject}",
        "-" * 72,
        message.text.rstrip(),
    ]
    links = message.links()
    if links:
        lines += ["-" * 72, "Links:", *(f"  {link}" for link in links)]
    print("\n".join(lines), flush=True)


def smtp_printer(port: int) -> None:
    """Run an SMTP server that prints each message, until SIGTERM/SIGINT."""
    recorder = SmtpRecorder(port=port, on_message=_print_message)
    recorder.start()
    print(f"SMTP printer listening on {recorder.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(3600):
        recorder.clear()  # printed already; do not keep messages forever
    recorder.stop()


def start(run_dir: Path, ports: dict[str, int]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)
    starters: dict[str, Callable[[int], int]] = {
        "redis": lambda port: _start_server(RedisServer(port, run_dir / "redis")),
        "postgres": lambda port: _start_postgres(port, run_dir),
        "ferretdb": lambda port: _start_ferretdb(port, run_dir, ports["postgres"]),
        "smtp": lambda port: _start_smtp(port, run_dir),
    }
    for name, starter in starters.items():
        port = ports[name]
        if port_is_listening(port):
            _say(f"{name}: 127.0.0.1:{port} already has a listener, using it")
            if name == "postgres":
                _ensure_authnode_db(port, run_dir)
            continue
        began = time.monotonic()
        pid = starter(port)
        _pid_file(run_dir, name).write_text(f"{pid}\n")
        _say(f"{name}: started on 127.0.0.1:{port} (pid {pid}, {time.monotonic() - began:.1f}s)")


def _start_server(server: RedisServer | FerretDB) -> int:
    server.spawn(detach=True)
    server.wait_ready()
    assert server.pid is not None
    return server.pid


def _start_ferretdb(port: int, run_dir: Path, postgres_port: int) -> int:
    """FerretDB on the PostgreSQL above (its own database), or on SQLite files when
    AUTHNODE_TEST_FERRETDB_HANDLER=sqlite."""
    postgresql_url = None
    if ferretdb_handler() == "postgresql":
        postgres = PostgresServer(postgres_port, _postgres_dir(run_dir))
        postgresql_url = postgres.ensure_database(POSTGRESQL_DATABASE)
    return _start_server(FerretDB(port, run_dir / "ferretdb", postgresql_url=postgresql_url))


def _start_postgres(port: int, run_dir: Path) -> int:
    server = PostgresServer(port, _postgres_dir(run_dir))
    server.spawn(detach=True)
    server.wait_ready()
    server.ensure_database(server.database)
    assert server.pid is not None
    return server.pid


def _ensure_authnode_db(port: int, run_dir: Path) -> None:
    try:
        PostgresServer(port, _postgres_dir(run_dir)).ensure_database("authnode")
    except Exception as exc:
        _say(f"postgres: could not make sure database 'authnode' exists: {exc}")


def _start_smtp(port: int, run_dir: Path) -> int:
    log = run_dir / "smtp.log"
    root = Path(__file__).resolve().parents[2]
    args = ["-m", "tests.services.run_local", "smtp-printer", "--smtp-port", str(port)]
    proc = spawn(
        [sys.executable, *args],
        log,
        cwd=root,
        detach=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise ServiceError(f"SMTP printer exited; see {log}")
        return port_is_listening(port)

    wait_until(ready, 15, f"SMTP printer on {HOST}:{port}")
    return proc.pid


def _owned_pid(run_dir: Path, name: str) -> int | None:
    """The pid from NAME.pid if that process is still the one we started."""
    path = _pid_file(run_dir, name)
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    return pid if SERVICES[name][1] in cmdline else None


def _gone(pid: int) -> Callable[[], bool]:
    return lambda: not Path(f"/proc/{pid}").exists()


def stop(run_dir: Path) -> None:
    for name in SERVICES:
        pid = _owned_pid(run_dir, name)
        _pid_file(run_dir, name).unlink(missing_ok=True)
        if pid is None:
            continue
        os.kill(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        try:
            wait_until(_gone(pid), 30, f"{name} to exit")
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
        _say(f"{name}: stopped (pid {pid})")


def status(run_dir: Path, ports: dict[str, int]) -> None:
    for name in SERVICES:
        port = ports[name]
        state = "listening" if port_is_listening(port) else "not listening"
        pid = _owned_pid(run_dir, name)
        owner = f" (started by run_local, pid {pid})" if pid else ""
        print(f"{name:9} 127.0.0.1:{port:<6} {state}{owner}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.services.run_local")
    parser.add_argument("command", choices=["start", "stop", "status", "smtp-printer"])
    parser.add_argument("--dir", type=Path, default=Path(".run"), help="state folder")
    for name, (port, _) in SERVICES.items():
        parser.add_argument(f"--{name}-port", type=int, default=port)
    args = parser.parse_args(argv)
    ports = {name: getattr(args, f"{name}_port") for name in SERVICES}
    run_dir = args.dir.resolve()
    if args.command == "start":
        start(run_dir, ports)
    elif args.command == "stop":
        stop(run_dir)
    elif args.command == "status":
        status(run_dir, ports)
    else:
        smtp_printer(ports["smtp"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
