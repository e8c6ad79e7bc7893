"""The stack under test: the test suite's ephemeral servers, authnode processes, seed data.

The servers are the ones ``tests/conftest.py`` starts (``tests/services``): one
redis-server (single mode: the cluster's six nodes would take CPU from the API on a small
machine, and every command here touches one key or one hash tag, so a cluster adds a
hop, not work), PostgreSQL, FerretDB and the SMTP recorder, on free loopback ports, in a
temporary folder removed afterwards. authnode runs as the real binary through
``tests.harness`` (``python -m authnode serve ...``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.harness import ROOT, AuthnodeEnv, AuthnodeProcess, link_token
from tests.services import (
    POSTGRESQL_DATABASE,
    FerretDB,
    PostgresServer,
    RedisServer,
    SmtpRecorder,
    ferretdb_handler,
    free_port,
    wait_until,
)

PASSWORD = "correct horse battery staple"
VERIFY_SUBJECT = "Verify your email address"
SEED_CONCURRENCY = 8

# The bench's settings on top of the defaults: limits that would stop one client hammering
# a few accounts from one address are lifted (the bench measures work, not refusals);
# tokens and cached profiles outlive the run. Everything else, argon2 included, stays at
# its default.
BENCH_SETTINGS = {
    "LOG_LEVEL": "info",
    "LOGIN_ACCOUNT_LIMIT": "100000000/15m",
    "LOGIN_ACCOUNT_TOTAL_LIMIT": "100000000/1h",
    "LOGIN_IP_LIMIT": "100000000/15m",
    "REGISTER_IP_LIMIT": "100000000/1h",
    "FORGOT_IP_LIMIT": "100000000/1h",
    "RESEND_IP_LIMIT": "100000000/1h",
    "REFRESH_IP_LIMIT": "100000000/1h",
    "EMAIL_ADDRESS_LIMIT": "100000000/1m",
    "ACCESS_TOKEN_TTL": "2h",
    "PROFILE_CACHE_TTL": "2h",
    "DRAIN_DELAY_S": "0",  # no load balancer watches /readyz here: stop at once
    "SECRET_KEY": "SEEJIPu7vqOwyPJQoqAvPo-LU6O15z47wbRwh-dNGXaEujIGzB-n7U85iGfFrRW8",
    "PUBLIC_URL": "http://auth.bench.test",
    "MAIL_FROM": "authnode <no-reply@bench.test>",
}


class Services:
    """Redis (single), PostgreSQL, FerretDB and the SMTP recorder, started together."""

    def __init__(self, ferretdb_backend: str | None = None) -> None:
        """``ferretdb_backend``: postgresql or sqlite (default: as the tests choose it,
        ``AUTHNODE_TEST_FERRETDB_HANDLER``, PostgreSQL unless set)."""
        self.ferretdb_backend = ferretdb_backend or ferretdb_handler()
        self.dir = Path(tempfile.mkdtemp(prefix="authnode-bench-"))
        self.dir.chmod(0o755)  # the postgres OS user must reach its folder
        self.redis = RedisServer(free_port(), self.dir / "redis", name="redis-bench")
        self.postgres = PostgresServer(free_port(), self.dir / "postgres")
        self.mongo = FerretDB(free_port(), self.dir / "ferretdb")  # its backend: see start()
        self.smtp = SmtpRecorder()

    def start(self) -> None:
        self.redis.start()
        self.postgres.start()
        if self.ferretdb_backend == "postgresql":  # sqlite: files in its folder
            self.mongo.postgresql_url = self.postgres.ensure_database(POSTGRESQL_DATABASE)
        self.mongo.start()
        self.smtp.start()

    def stop(self) -> None:
        for stop in (self.smtp.stop, self.mongo.stop, self.postgres.stop, self.redis.stop):
            try:
                stop()
            except Exception as error:  # keep stopping the others
                print(f"bench: could not stop a server: {error!r}", file=sys.stderr)
        if os.environ.get("AUTHNODE_KEEP_SERVICE_DIR"):
            print(f"bench: service files kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def environment(self, workdir: Path) -> AuthnodeEnv:
        database = f"authnode_bench_{secrets.token_hex(4)}"
        return AuthnodeEnv({
            **BENCH_SETTINGS,
            "MONGODB_URI": self.mongo.uri_for(database),
            "REDIS_URL": self.redis.url,
            "REDIS_MODE": "single",
            "POSTGRES_URL": self.postgres.create_database(database),
            "SMTP_URL": self.smtp.url,
        }, workdir)


# ---------------------------------------------------------------- authnode processes


@dataclass
class Started:
    """A running authnode (or floor) process and how long it took to answer."""

    process: AuthnodeProcess
    ready_s: float
    all_ready_s: float | None = None
    profile_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.process.url


def _spawn(env: AuthnodeEnv, args: list[str], *, name: str, port: int,
           role: str, python: str = sys.executable,
           extra_env: dict[str, str] | None = None) -> AuthnodeProcess:
    log_path = env.workdir / f"{name}-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([python, *args], env={**env.os_env(), **(extra_env or {})},
                                cwd=ROOT,
                                stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return AuthnodeProcess(proc=proc, port=port, log_path=log_path, role=role)


def _wait_http(process: AuthnodeProcess, path: str, timeout_s: float, since: float) -> float:
    """Seconds from ``since`` (a perf_counter) until ``path`` answers 200 (polled every
    10 ms)."""
    started = since
    deadline = started + timeout_s
    with httpx.Client(timeout=2) as client:
        while True:
            if process.proc.poll() is not None:
                raise RuntimeError(f"{process.role} exited {process.proc.returncode}:\n"
                                   f"{process.logs()[-4000:]}")
            try:
                if client.get(process.url + path).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            if time.perf_counter() > deadline:
                process.kill()
                raise RuntimeError(f"{process.role} not ready in {timeout_s}s:\n"
                                   f"{process.logs()[-4000:]}")
            time.sleep(0.01)


def start_api(env: AuthnodeEnv, *, workers: int = 1, profile_dir: Path | None = None,
              timeout_s: float = 60) -> Started:
    """``authnode serve --role api --workers N``; ready_s is from spawn to /readyz 200."""
    port = free_port()
    serve = ["serve", "--role", "api", "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers)]
    if profile_dir is not None:
        args = ["-m", "bench.profiled", str(profile_dir), *serve]
    else:
        args = ["-m", "authnode", *serve]
    spawned = time.perf_counter()
    process = _spawn(env, args, name=f"api-w{workers}", port=port, role="api")
    ready_s = _wait_http(process, "/readyz", timeout_s, spawned)
    started = Started(process=process, ready_s=ready_s, profile_dir=profile_dir)
    # /readyz answers from whichever child the kernel picks: also wait for every child.
    wait_until(lambda: process.logs().count('"message":"ready"') >= workers, timeout_s,
               f"{workers} API processes to log ready", interval=0.01, max_interval=0.01)
    started.all_ready_s = time.perf_counter() - spawned
    started.extra["rss_mib_when_ready"] = [vm_rss_mib(pid) for pid in serving_pids(process)]
    return started


def start_worker(env: AuthnodeEnv, timeout_s: float = 60,
                 profile_dir: Path | None = None) -> AuthnodeProcess:
    """``authnode serve --role worker``; under ``bench.profiled`` with ``profile_dir``."""
    if profile_dir is None:
        process = env.start("worker", wait=False, name="worker")
    else:
        process = _spawn(env, ["-m", "bench.profiled", str(profile_dir), "serve", "--role",
                               "worker"], name="worker-profiled", port=0, role="worker")
    process.wait_ready(timeout_s)
    return process


def start_floor(env: AuthnodeEnv, body_bytes: int, timeout_s: float = 30) -> Started:
    port = free_port()
    args = ["-m", "bench.floor_app", "--bind", f"127.0.0.1:{port}",
            "--body-bytes", str(body_bytes)]
    spawned = time.perf_counter()
    process = _spawn(env, args, name="floor", port=port, role="floor")
    ready_s = _wait_http(process, "/floor", timeout_s, spawned)
    return Started(process=process, ready_s=ready_s)


# ---------------------------------------------------------------- the peer (fastapi-users)

PEER_VENV = ROOT / "bench" / ".peer-venv"
PEER_REQUIREMENTS = ROOT / "bench" / "peer-requirements.txt"


def peer_python() -> Path | None:
    """The peer's interpreter, when its virtual environment was made (bench/README.md)."""
    python = PEER_VENV / "bin" / "python"
    return python if python.exists() else None


def settle_postgres(postgres: PostgresServer, timeout_s: float = 60) -> None:
    """VACUUM (ANALYZE) every database, CHECKPOINT, and wait until no autovacuum worker
    runs: the maintenance that the previous scenarios' writes (FerretDB's tables live on
    this server too) would otherwise start inside a job scenario's measured window."""
    with postgres.connect("postgres") as conn:
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate")]
    for name in names:
        with postgres.connect(name) as conn:
            conn.execute("VACUUM (ANALYZE)")
    with postgres.connect("postgres") as conn:
        conn.execute("CHECKPOINT")

        def no_autovacuum() -> bool:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity "
                               "WHERE backend_type = 'autovacuum worker'").fetchone()
            return row is not None and row[0] == 0

        wait_until(no_autovacuum, timeout_s, "PostgreSQL's autovacuum workers to finish")


def start_peer(env: AuthnodeEnv, postgres: PostgresServer, timeout_s: float = 60) -> Started:
    """fastapi-users on uvicorn (one process), its users in a database of its own on the
    bench's PostgreSQL."""
    python = peer_python()
    if python is None:
        raise RuntimeError(f"no {PEER_VENV}: see bench/README.md, 'The peer'")
    database = postgres.create_database(f"peer_{secrets.token_hex(4)}")
    port = free_port()
    spawned = time.perf_counter()
    process = _spawn(env, [str(ROOT / "bench" / "peer_fastapi_users.py"), "--port", str(port)],
                     name="peer", port=port, role="peer", python=str(python), extra_env={
                         "PEER_DATABASE_URL": database.replace("postgresql://",
                                                               "postgresql+asyncpg://", 1),
                         "PEER_JWT_SECRET": secrets.token_urlsafe(32)})
    ready_s = _wait_http(process, "/healthz", timeout_s, spawned)
    return Started(process=process, ready_s=ready_s)


async def _peer_tokens(url: str, users: int) -> list[str]:
    gate = asyncio.Semaphore(SEED_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def one(index: int) -> str:
            email = f"peer-{index:04d}@example.com"
            async with gate:
                registered = await client.post("/auth/register", json={
                    "email": email, "password": PASSWORD})
                if registered.status_code != 201:
                    raise RuntimeError(f"peer register: {registered.status_code} "
                                       f"{registered.text}")
                login = await client.post("/auth/jwt/login", data={
                    "username": email, "password": PASSWORD})
                if login.status_code != 200:
                    raise RuntimeError(f"peer login: {login.status_code} {login.text}")
                token: str = login.json()["access_token"]
                me = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
                if me.status_code != 200:
                    raise RuntimeError(f"peer me: {me.status_code} {me.text}")
                return token

        return list(await asyncio.gather(*(one(i) for i in range(users))))


def peer_tokens(url: str, users: int) -> list[str]:
    """Register and log in ``users`` accounts through the peer's API; their tokens."""
    return asyncio.run(_peer_tokens(url, users))


def stop(process: AuthnodeProcess | None) -> None:
    if process is None:
        return
    try:
        process.stop(timeout=30)
    except AssertionError:
        process.kill()


def serving_pids(process: AuthnodeProcess) -> list[int]:
    """The processes that serve requests: the process itself, or a supervisor's children."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        if int(stat.rpartition(")")[2].split()[1]) == process.proc.pid:
            children.append(int(entry.name))
    return sorted(children) or [process.proc.pid]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (every thread), from /proc/PID/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def thread_cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(main thread, every other thread) user + system CPU of these processes, from
    /proc/PID/task/TID/stat: in authnode's API the main thread runs the event loop and
    the others are the Argon2 (``HASH_THREADS``) and anyio worker threads."""
    main = other = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                fields = (task / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            ticks = int(fields[11]) + int(fields[12])
            if task.name == str(pid):
                main += ticks
            else:
                other += ticks
    return main / CLOCK_TICKS, other / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process, its live children and its reaped children (cutime + cstime):
    PostgreSQL's postmaster and its backends."""
    total = 0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    except OSError:
        return 0.0
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            children.append(int(entry.name))
    return total / CLOCK_TICKS + cpu_seconds(children)


def vm_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def profile_signal(started: Started, signum: int) -> None:
    """Start (SIGUSR1) or stop (SIGUSR2) pyinstrument in a ``bench.profiled`` API."""
    if started.profile_dir is None:
        return
    for pid in serving_pids(started.process):
        os.kill(pid, signum)


def collect_profile(started: Started, name: str, timeout_s: float = 60) -> Path | None:
    """Stop the profiler and rename what it wrote to ``<name>.txt`` / ``<name>.html``."""
    if started.profile_dir is None:
        return None
    return collect_profile_of(serving_pids(started.process), started.profile_dir, name,
                              timeout_s)


def collect_profile_of(pids: list[int], directory: Path, name: str,
                       timeout_s: float = 60) -> Path:
    """SIGUSR2 to ``bench.profiled`` processes ``pids``; their report as ``<name>.*``."""
    before = set(directory.glob("profile-*.done"))
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)
    done = wait_until(lambda: set(directory.glob("profile-*.done")) - before, timeout_s,
                      "the profiler to write its report")
    marker = sorted(done)[0]
    for suffix in (".txt", ".html", ".pyisession"):
        if marker.with_suffix(suffix).exists():
            marker.with_suffix(suffix).replace(directory / f"{name}{suffix}")
    marker.unlink()
    return directory / f"{name}.txt"


# ---------------------------------------------------------------- seed data


@dataclass
class Account:
    email: str
    password: str
    user_id: str


@dataclass
class Seed:
    accounts: list[Account]
    access_tokens: list[str]
    refresh_sets: list[list[str]]
    me_body_bytes: int


async def _register_verified(client: httpx.AsyncClient, smtp: SmtpRecorder,
                             emails: list[str]) -> list[Account]:
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def register(email: str, index: int) -> None:
        async with gate:
            response = await client.post("/v1/auth/register", json={
                "email": email, "password": PASSWORD, "name": f"Bench User {index:04d}"})
            if response.status_code != 202:
                raise RuntimeError(f"register {email}: {response.status_code} {response.text}")

    await asyncio.gather(*(register(email, i) for i, email in enumerate(emails)))
    wanted = set(emails)

    def all_mailed() -> bool:
        got = {rcpt for m in smtp.messages() if m.subject == VERIFY_SUBJECT
               for rcpt in m.rcpt_tos}
        return wanted <= got

    deadline = time.monotonic() + 120
    while not all_mailed():
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not send every verification email in 120 s")
        await asyncio.sleep(0.05)
    tokens = {}
    for message in smtp.messages():
        if message.subject == VERIFY_SUBJECT:
            tokens[message.rcpt_tos[0]] = link_token(message, "/verify-email")

    async def verify(email: str) -> Account:
        async with gate:
            response = await client.post("/v1/auth/verify-email",
                                         json={"token": tokens[email]})
            if response.status_code != 200:
                raise RuntimeError(f"verify {email}: {response.status_code} {response.text}")
            return Account(email, PASSWORD, response.json()["user"]["id"])

    return list(await asyncio.gather(*(verify(email) for email in emails)))


async def _logins(client: httpx.AsyncClient, accounts: list[Account],
                  count: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def login(account: Account) -> dict[str, Any]:
        async with gate:
            response = await client.post("/v1/auth/login", json={
                "email": account.email, "password": account.password})
            if response.status_code != 200:
                raise RuntimeError(f"login: {response.status_code} {response.text}")
            body: dict[str, Any] = response.json()
            return body

    return list(await asyncio.gather(
        *(login(accounts[i % len(accounts)]) for i in range(count))))


async def _seed(api_url: str, smtp: SmtpRecorder, *, users: int, refresh_sets: int,
                sessions_per_set: int) -> Seed:
    emails = [f"bench-{i:04d}@example.com" for i in range(users)]
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        accounts = await _register_verified(client, smtp, emails)
        sessions = await _logins(client, accounts, users + refresh_sets * sessions_per_set)
        access = [s["access_token"] for s in sessions[:users]]
        spare = [s["refresh_token"] for s in sessions[users:]]
        sets = [spare[i * sessions_per_set:(i + 1) * sessions_per_set]
                for i in range(refresh_sets)]
        # Warm the profile cache, and learn the size of the answer the floor must match.
        sizes = set()
        for token in access:
            response = await client.get("/v1/users/me",
                                        headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                raise RuntimeError(f"me: {response.status_code} {response.text}")
            sizes.add(len(response.content))
    smtp.clear()
    return Seed(accounts=accounts, access_tokens=access, refresh_sets=sets,
                me_body_bytes=max(sizes))


def seed(api_url: str, smtp: SmtpRecorder, *, users: int, refresh_sets: int,
         sessions_per_set: int) -> Seed:
    """Register and verify ``users`` accounts through the API and the worker (the link
    read from the SMTP recorder), log each in once (access tokens for GET /me), and open
    ``refresh_sets`` x ``sessions_per_set`` more sessions (refresh chains, one set per
    wrk run, since a run leaves its chains at tokens only wrk saw)."""
    return asyncio.run(_seed(api_url, smtp, users=users, refresh_sets=refresh_sets,
                             sessions_per_set=sessions_per_set))


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path
