"""Scale-out proven with several hosts: two API processes and two worker processes, each in
its own network namespace (its own address, its own loopback), sharing one Redis Cluster,
one FerretDB and one PostgreSQL that listen on the test bridge (see tests/netns.py).

Through them: an account registered on host A is verified and logged into on host B,
refreshed on A, reads the same from both, and a logout on B refuses the token on A at
once; failed logins on both hosts count together; ``/v1/stats/online`` is the same from
both; verification emails go out exactly once although two workers compete for the jobs;
and a worker killed with SIGKILL in the middle of a burst of 50 emails loses none and
doubles none.

The servers of this module are its own (the session's listen on 127.0.0.1, which another
namespace cannot reach): a 6-node Redis Cluster bound to, and announcing, the bridge
address, so the cluster's redirects lead somewhere the namespaces can go; FerretDB;
PostgreSQL admitting its subnet; and an SMTP recorder. Without the privilege to create
namespaces the same scenario runs on loopback ports instead, and each test then ends in a
skip whose reason says so (CI runs as root and runs the namespace version).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller

from tests.acceptance.test_accounts_support import (
    assert_error,
    bearer,
    login,
    refresh,
    register,
    verification_token,
    verify,
)
from tests.harness import TEST_DEFAULTS, AuthnodeEnv, AuthnodeProcess, unique_email
from tests.netns import Host, Network, unavailable_reason
from tests.services import (
    HOST,
    FerretDB,
    PostgresServer,
    RedisCluster,
    SmtpRecorder,
    free_port,
    wait_until,
)
from tests.services.smtp import _Handler

pytestmark = [pytest.mark.slow, pytest.mark.alone]

LOGIN_LIMIT = 6
WORKER_CONCURRENCY = 4
STALLED_JOB_AFTER_S = 6
API_PORT = 8080  # every namespace has its own address, so both APIs may use it
BURST = 50
HOLD_AFTER = 10


# --------------------------------------------------------------------------- SMTP with a gate


class _GatedHandler(_Handler):
    """Records like the plain recorder; once the gate is armed and enough messages have
    arrived, holds every new RCPT (before any message data) until the gate opens."""

    recorder: GatedSmtpRecorder

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        recorder = self.recorder
        if recorder.hold_after is not None and len(recorder) >= recorder.hold_after:
            with recorder.lock:
                recorder.held += 1
            try:
                while not recorder.opened.is_set():
                    await asyncio.sleep(0.02)
            finally:
                with recorder.lock:
                    recorder.held -= 1
        envelope.rcpt_tos.append(address)
        return "250 OK"


class GatedSmtpRecorder(SmtpRecorder):
    """An SmtpRecorder that can stall deliveries at RCPT: a worker killed then has jobs in
    hand that sent nothing yet, and no job is between "sent" and "recorded as sent"."""

    def __init__(self, host: str) -> None:
        super().__init__(host=host)
        self.hold_after: int | None = None
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.held = 0

    def start(self) -> None:
        if self._controller is not None:
            return
        controller = Controller(_GatedHandler(self), hostname=self.host, port=self.port,
                                ready_timeout=10.0, enable_SMTPUTF8=True)
        controller.start()
        self._controller = controller

    def hold(self, after: int) -> None:
        self.opened.clear()
        self.hold_after = after

    def release(self) -> None:
        self.opened.set()
        self.hold_after = None


# --------------------------------------------------------------------------- the deployment


@dataclass
class HostProcess(AuthnodeProcess):
    """An ``authnode serve`` on one host; ``url`` is its address as the others see it."""

    host: Host = field(default_factory=lambda: Host("loopback", HOST))

    @property
    def url(self) -> str:
        return f"http://{self.host.ip}:{self.port}"


@dataclass
class Deployment:
    env: AuthnodeEnv
    smtp: GatedSmtpRecorder
    postgres_url: str
    hosts: list[Host]
    fallback: str | None  # why the loopback variant runs instead of namespaces
    processes: dict[str, HostProcess] = field(default_factory=dict)

    def start(self, name: str, role: str, host: Host) -> HostProcess:
        port = API_PORT if host.namespace else free_port()
        args = [sys.executable, "-m", "authnode", "serve", "--role", role]
        if role == "api":
            args += ["--bind", f"{host.ip}:{port}", "--workers", "1"]
        # A restarted process gets its own log: wait_ready() looks for the "ready" line,
        # which the log of the process it replaces already has.
        log_path = self.env.workdir / f"{name}.log"
        restarts = 0
        while log_path.exists():
            restarts += 1
            log_path = self.env.workdir / f"{name}.{restarts}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                host.command(args), cwd=self.env.workdir, stdout=log, stderr=subprocess.STDOUT,
                env={**self.env.os_env(), "INSTANCE_ID": name}, start_new_session=True)
        process = HostProcess(proc=proc, port=port, log_path=log_path, role=role, host=host)
        self.processes[name] = process
        return process

    def __getitem__(self, name: str) -> HostProcess:
        return self.processes[name]

    def skip_if_fallback(self) -> None:
        """Called at the end of each test: the loopback variant proves less."""
        if self.fallback:
            pytest.skip(f"network namespaces unavailable ({self.fallback}): ran on "
                        "separate loopback ports of one host instead")


def _service_folder() -> Path:
    # 0755 like the session's services folder: PostgreSQL runs as the `postgres` user.
    folder = Path(tempfile.mkdtemp(prefix="authnode-multihost-"))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    fallback = unavailable_reason()
    folder = _service_folder()
    with ExitStack() as cleanup:
        cleanup.callback(lambda: None if os.environ.get("AUTHNODE_KEEP_SERVICE_DIR")
                         else shutil.rmtree(folder, ignore_errors=True))
        if fallback is None:
            network = Network(4).open()
            cleanup.callback(_close_network, network)
            service_ip, hosts = network.gateway, network.hosts
        else:
            service_ip = HOST
            hosts = [Host(f"loopback-{i}", HOST) for i in range(4)]

        redis = RedisCluster(folder / "redis-cluster", host=service_ip)
        mongo = FerretDB(free_port(), folder / "ferretdb", host=service_ip)
        postgres = PostgresServer(free_port(), folder / "postgres", host=service_ip)
        smtp = GatedSmtpRecorder(host=service_ip)
        for server in (redis, mongo, postgres, smtp):
            cleanup.callback(server.stop)
        with ThreadPoolExecutor(4) as pool:  # the servers start side by side
            for started in [pool.submit(server.start) for server in (redis, mongo, postgres,
                                                                      smtp)]:
                started.result()

        env = AuthnodeEnv({
            **TEST_DEFAULTS,
            "MONGODB_URI": mongo.uri_for("authnode_multihost"),
            "REDIS_URL": redis.url, "REDIS_MODE": "cluster",
            "POSTGRES_URL": postgres.url,
            "SMTP_URL": smtp.url,
            "SECRET_KEY": "cgOFTUL-gOfkRppmG16GRHL9BjtJmiznENK4E3H8fcKlFNaslTA-uwER_3cGowrX",
            "PUBLIC_URL": "http://auth.example.test",
            "MAIL_FROM": "authnode <no-reply@example.test>",
            "LOGIN_ACCOUNT_LIMIT": f"{LOGIN_LIMIT}/15m",
            "WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            "STALLED_JOB_AFTER_S": str(STALLED_JOB_AFTER_S),
        }, folder)
        migrated = env.run("migrate")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr

        found = Deployment(env=env, smtp=smtp, postgres_url=postgres.url, hosts=hosts,
                           fallback=fallback)
        cleanup.callback(_stop_all, found)
        for name, role, host in (("api-a", "api", hosts[0]), ("api-b", "api", hosts[1]),
                                 ("worker-1", "worker", hosts[2]),
                                 ("worker-2", "worker", hosts[3])):
            found.start(name, role, host)
        for process in found.processes.values():
            process.wait_ready(45)
        yield found


def _close_network(network: Network) -> None:
    leftovers = network.close()
    assert not leftovers and not network.exists(), f"not cleaned up: {leftovers}"


STOP_TIMEOUT_S = 20


def _stop_all(deployment: Deployment) -> None:
    """SIGTERM every process at once, then require each to exit 0: a graceful stop that
    fails (an error exit, or no exit within ``STOP_TIMEOUT_S``, after which it is killed)
    fails the teardown, with the process's log."""
    processes = dict(deployment.processes)
    for process in processes.values():
        process.close_client()  # an idle keep-alive connection would hold up the drain
        process.signal(signal.SIGTERM)
    failed: dict[str, str] = {}
    for name, process in processes.items():
        # Not process.stop(): it would send a second SIGTERM, which means "exit at once".
        try:
            code = process.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            failed[name] = f"did not stop in {STOP_TIMEOUT_S} s; log:\n{process.logs()[-3000:]}"
            continue
        if code != 0:
            failed[name] = f"exited {code}; log:\n{process.logs()[-3000:]}"
    assert not failed, "graceful stop failed:\n" + "\n".join(
        f"--- {name}: {detail}" for name, detail in failed.items())


def _api(deployment: Deployment, name: str) -> httpx.Client:
    return deployment[name].client


def _email_jobs(postgres_url: str) -> Counter[str]:
    with psycopg.connect(postgres_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT status, count(*) FROM procrastinate_jobs "
                            "WHERE queue_name = 'email' GROUP BY status").fetchall()
    return Counter({str(status): int(count) for status, count in rows})


def _wait_jobs_done(deployment: Deployment, timeout: float = 30) -> None:
    """No email job left to do or in progress: an absent message is "not sent", not "not
    sent yet"."""
    wait_until(lambda: not {"todo", "doing"} & set(_email_jobs(deployment.postgres_url)),
               timeout, lambda: f"email jobs to finish: {_email_jobs(deployment.postgres_url)}")


def _sent_by(process: AuthnodeProcess) -> int:
    count = 0
    for line in process.logs().splitlines():
        if line.startswith("{") and '"outcome":"sent"' in line:
            count += json.loads(line).get("task") == "authnode.send_email"
    return count


def _recipients(smtp: SmtpRecorder, emails: set[str]) -> Counter[str]:
    """Messages received per address, for the addresses in ``emails``."""
    return Counter(rcpt for m in smtp.messages() for rcpt in m.rcpt_tos if rcpt in emails)


# --------------------------------------------------------------------------- the tests


def test_namespaces_isolate_the_hosts(deployment: Deployment) -> None:
    """Each process runs on its own address; an API listens only there."""
    a, b = deployment["api-a"], deployment["api-b"]
    if not deployment.fallback:
        assert len({host.ip for host in deployment.hosts}) == 4
        assert a.host.namespace != b.host.namespace and a.port == b.port == API_PORT
        # Inside A, B's API is reachable over the bridge, while A's loopback is A's own:
        # nothing listens on it (A's API is bound to A's address).
        script = ("import socket,sys; s=socket.socket(); s.settimeout(2); "
                  "sys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))))")
        for target, reachable in ((b.host.ip, True), ("127.0.0.1", False)):
            probe = subprocess.run(
                a.host.command([sys.executable, "-c", script, target, str(API_PORT)]),
                capture_output=True, timeout=30, check=False)
            assert (probe.returncode == 0) is reachable, (target, probe.stderr)
    for process in (a, b):
        assert process.client.get("/readyz").status_code == 200
    deployment.skip_if_fallback()


def test_an_account_moves_between_hosts(deployment: Deployment) -> None:
    a, b = _api(deployment, "api-a"), _api(deployment, "api-b")
    email = unique_email("hosts")
    register(a, email, name="Ada")
    token = verification_token(deployment.smtp, email)
    verify(b, token)
    first = login(b, email)
    refreshed = refresh(a, first["refresh_token"])
    access = refreshed["access_token"]

    me_a = a.get("/v1/users/me", headers=bearer(access))
    me_b = b.get("/v1/users/me", headers=bearer(access))
    assert me_a.status_code == me_b.status_code == 200, (me_a.text, me_b.text)
    assert me_a.json() == me_b.json() and me_a.json()["email"] == email
    assert me_a.headers["ETag"] == me_b.headers["ETag"]
    assert me_a.headers["Cache-Control"] == me_b.headers["Cache-Control"] == "no-store"

    assert b.post("/v1/auth/logout", headers=bearer(access)).status_code == 204
    # At once, on the other host: no wait, no cache that could still say yes.
    assert_error(a.get("/v1/users/me", headers=bearer(access)), 401, "invalid_token")
    assert_error(a.post("/v1/auth/refresh",
                        json={"refresh_token": refreshed["refresh_token"]}),
                 401, "invalid_token")

    _wait_jobs_done(deployment)
    assert len(deployment.smtp.messages(to=email)) == 1  # one verification email
    deployment.skip_if_fallback()


def test_failed_logins_on_both_hosts_count_together(deployment: Deployment) -> None:
    a, b = _api(deployment, "api-a"), _api(deployment, "api-b")
    email = unique_email("locked")
    wrong = {"email": email, "password": "not the password"}
    for attempt in range(LOGIN_LIMIT):  # half on each host: neither alone is at the limit
        host = a if attempt % 2 == 0 else b
        assert_error(host.post("/v1/auth/login", json=wrong), 401, "invalid_credentials")
    for host in (a, b):
        refused = host.post("/v1/auth/login", json=wrong)
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) > 0
    deployment.skip_if_fallback()


def _signed_in_users(deployment: Deployment, count: int) -> list[str]:
    """``count`` verified users (registered and verified alternately on A and B) and an
    access token for each."""
    a, b = _api(deployment, "api-a"), _api(deployment, "api-b")
    emails = [unique_email("online") for _ in range(count)]
    for index, email in enumerate(emails):
        register((a, b)[index % 2], email)
    tokens = []
    for index, email in enumerate(emails):
        client = (b, a)[index % 2]
        verify(client, verification_token(deployment.smtp, email))
        tokens.append(login(client, email)["access_token"])
    return tokens


def test_online_users_are_counted_across_hosts(deployment: Deployment) -> None:
    a, b = _api(deployment, "api-a"), _api(deployment, "api-b")
    reader, *others = _signed_in_users(deployment, 4)

    def online() -> tuple[int, int]:
        from_a = a.get("/v1/stats/online", headers=bearer(reader))
        from_b = b.get("/v1/stats/online", headers=bearer(reader))
        assert from_a.status_code == from_b.status_code == 200, (from_a.text, from_b.text)
        assert from_a.json()["window_seconds"] == from_b.json()["window_seconds"] == 300
        assert from_a.headers["Cache-Control"] == "no-store"
        return from_a.json()["online"], from_b.json()["online"]

    # The reader's own requests mark it too, a moment later: wait until both hosts agree
    # and the count has stopped moving for longer than a flush plus a reused count.
    last: list[Any] = [None, 0.0]

    def settled() -> int | None:
        seen, now = online(), time.monotonic()
        if seen != last[0]:
            last[:] = [seen, now]
        return seen[0] if seen[0] == seen[1] and now - last[1] > 3 else None

    before = wait_until(settled, 20, "both hosts to report the same, steady count")
    for index, token in enumerate(others):  # two users active on A, one on B
        host = (a, a, b)[index]
        assert host.get("/v1/users/me", headers=bearer(token)).status_code == 200
    expected = before + len(others)
    wait_until(lambda: online() == (expected, expected), 15,
               lambda: f"both hosts to count {expected} (now {online()})")
    deployment.skip_if_fallback()


def test_verification_emails_are_sent_once_by_competing_workers(
        deployment: Deployment) -> None:
    a, b = _api(deployment, "api-a"), _api(deployment, "api-b")
    workers = (deployment["worker-1"], deployment["worker-2"])
    sent_before = [_sent_by(worker) for worker in workers]
    emails = [unique_email("once") for _ in range(20)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda pair: register(*pair), zip((a, b) * 10, emails, strict=True)))
    _wait_jobs_done(deployment)
    received = _recipients(deployment.smtp, set(emails))
    assert received == Counter({email: 1 for email in emails})
    sent = [_sent_by(worker) - before for worker, before in zip(workers, sent_before,
                                                                strict=True)]
    assert sum(sent) == len(emails), sent  # each job ran to "sent" on one worker only
    deployment.skip_if_fallback()


def test_a_worker_killed_mid_burst_loses_and_doubles_nothing(deployment: Deployment) -> None:
    a, b = _api(deployment, "api-a"), _api(deployment, "api-b")
    smtp = deployment.smtp
    victim, survivor = deployment["worker-1"], deployment["worker-2"]
    emails = [unique_email("burst") for _ in range(BURST)]
    smtp.hold(after=len(smtp) + HOLD_AFTER)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda pair: register(*pair),
                          zip((a, b) * (BURST // 2), emails, strict=True)))
        # Both workers end up with every email slot holding a job stalled at RCPT:
        # nothing of theirs is half-sent, and the victim certainly has jobs in hand.
        full = 2 * WORKER_CONCURRENCY
        wait_until(lambda: smtp.held == full, 30,
                   lambda: f"{full} deliveries held (held {smtp.held}, "
                           f"jobs {_email_jobs(deployment.postgres_url)})")
        assert 0 < len(_recipients(smtp, set(emails))) < BURST
        victim.kill()  # SIGKILL, the whole process group
        assert victim.proc.returncode == -signal.SIGKILL
    finally:
        smtp.release()

    # The survivor requeues the dead worker's jobs once their heartbeat is older than
    # STALLED_JOB_AFTER_S, and sends them.
    wait_until(lambda: sum(_recipients(smtp, set(emails)).values()) >= BURST,
               STALLED_JOB_AFTER_S * 6,
               lambda: f"{BURST} emails (got {sum(_recipients(smtp, set(emails)).values())}"
                       f", jobs {_email_jobs(deployment.postgres_url)})")
    _wait_jobs_done(deployment)
    assert _recipients(smtp, set(emails)) == Counter({email: 1 for email in emails})
    assert "stalled job requeued" in survivor.logs()
    jobs = _email_jobs(deployment.postgres_url)
    assert set(jobs) == {"succeeded"}, jobs

    # Put the deployment back as it was for whatever runs next.
    deployment.start("worker-1", "worker", victim.host).wait_ready(45)
    deployment.skip_if_fallback()


def test_the_network_is_private(deployment: Deployment) -> None:
    """The namespaces reach the bridge subnet only: no route leads off this machine."""
    if deployment.fallback:
        deployment.skip_if_fallback()
    host = deployment["api-a"].host
    routes = subprocess.run(host.command(["ip", "-4", "route", "show"]), capture_output=True,
                            text=True, timeout=10, check=True).stdout
    assert "default" not in routes
    assert routes.strip().count("\n") == 0, routes  # just the bridge's own /24
    started = time.monotonic()
    probe = subprocess.run(
        host.command([sys.executable, "-c",
                      "import socket,sys; s=socket.socket(); s.settimeout(1); "
                      "sys.exit(s.connect_ex(('192.0.2.1', 80)))"]),
        capture_output=True, timeout=30, check=False)
    assert probe.returncode != 0 and time.monotonic() - started < 10  # unreachable
