"""The scenarios, their floors, and the targets each ratio is held to.

Every figure is divided by a floor measured in the same run, on the same machine, with
the same load generator, a moment before or after it:

========================  ===========================================  ==================
scenario                  floor                                        target
========================  ===========================================  ==================
GET /v1/users/me          bare Quart route, same Hypercorn settings,   >= 0.60 req/s,
(cached profile)          JSON body of the same size                   p99 <= 2x floor p99
POST /v1/auth/refresh     the same bare floor                          >= 0.15 req/s
POST /v1/auth/login       usable CPUs / one argon2 verify              >= 0.85
GET /healthz, login       GET /healthz idle (same paced probe)         p99 <= 3x idle p99,
saturated                                                              in 3 runs of 3
email jobs -> SMTP        procrastinate draining no-op jobs            >= 0.50 jobs/s
GET /v1/users/me          fastapi-users' GET /users/me, one process    >= 3x
--workers 2 refresh       --workers 1 refresh                          >= 1.7
--workers 2 GET /me       --workers 1 GET /me                          reported
========================  ===========================================  ==================
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argon2
import procrastinate
import psycopg

from bench import stack
from bench.noop_jobs import NOOP_QUEUE, NOOP_TASK
from bench.wrk import WrkRun, finish
from tests.harness import AuthnodeEnv

EMAIL_QUEUE = "email"
SEND_EMAIL_TASK = "authnode.send_email"
HASH_SAMPLES = 30


@dataclass(frozen=True)
class Options:
    duration_s: int = 10
    warmup_s: int = 2
    connections: int = 32
    threads: int = 1
    probe_connections: int = 4
    probe_delay_ms: int = 10
    email_jobs: int = 500


@dataclass(frozen=True)
class Target:
    check: str
    scenario: str
    floor: str
    metric: str
    op: str  # ">=", "<=" or "report"
    target: float | None
    what: str


TARGETS = (
    Target("users_me_rps", "users_me", "floor", "rps", ">=", 0.60,
           "GET /v1/users/me req/s / bare-floor req/s"),
    Target("users_me_p99", "users_me", "floor", "p99_ms", "<=", 2.0,
           "GET /v1/users/me p99 / bare-floor p99"),
    Target("refresh_rps", "refresh", "floor", "rps", ">=", 0.15,
           "POST /v1/auth/refresh req/s / bare-floor req/s"),
    Target("login_rps", "login", "hash_bound", "rps", ">=", 0.85,
           "POST /v1/auth/login req/s / (usable CPUs / one argon2 verify)"),
    Target("healthz_p99", "healthz_under_login", "healthz_idle", "p99_ms", "<=", 3.0,
           "GET /healthz p99 with login saturated / idle (the worst of 3 runs)"),
    Target("email_rate", "email", "noop_jobs", "jobs_per_s", ">=", 0.50,
           "email jobs/s through the worker / no-op jobs/s"),
    Target("users_me_vs_peer", "users_me", "peer_users_me", "rps", ">=", 3.0,
           "GET /v1/users/me req/s / fastapi-users GET /users/me req/s, one process each"),
    Target("refresh_scaling", "refresh_workers2", "refresh", "rps", ">=", 1.7,
           "POST /v1/auth/refresh req/s, --workers 2 / --workers 1"),
    Target("workers_scaling", "users_me_workers2", "users_me", "rps", "report", None,
           "GET /v1/users/me req/s, --workers 2 / --workers 1"),
)

HEALTHZ_RUNS = 3  # the p99 ratio must hold in every one of them


def evaluate(scenarios: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for t in TARGETS:
        value = scenarios.get(t.scenario, {}).get(t.metric)
        floor = scenarios.get(t.floor, {}).get(t.metric)
        ratio = round(value / floor, 3) if value is not None and floor else None
        if t.op == "report" or ratio is None:
            met = None
        elif t.op == ">=":
            met = ratio >= (t.target or 0)
        else:
            met = ratio <= (t.target or 0)
        errors = scenarios.get(t.scenario, {}).get("error_count", 0)
        checks.append({"check": t.check, "what": t.what, "scenario": t.scenario,
                       "floor": t.floor, "metric": t.metric, "value": value,
                       "floor_value": floor, "ratio": ratio, "op": t.op, "target": t.target,
                       "met": met, "scenario_errors": errors})
    return checks


class Runner:
    """Runs scenarios against started processes; keeps the data files in ``data_dir``."""

    def __init__(self, options: Options, data_dir: Path,
                 service_pids: dict[str, list[int]] | None = None,
                 postgres_pid: int | None = None,
                 profile_dir: Path | None = None) -> None:
        self.options = options
        self.profile_dir = profile_dir  # --profile: also profile the email worker
        self.data_dir = data_dir
        self.service_pids = service_pids or {}
        self.postgres_pid = postgres_pid

    def cpu_sample(self, groups: dict[str, list[int]]) -> dict[str, float]:
        """CPU seconds so far of each group of processes, of the main thread and the
        other threads of the ``server`` group, of PostgreSQL (postmaster and backends),
        of this process (the SMTP recorder's thread, the drain polling) and of its reaped
        children (wrk)."""
        sample = {group: stack.cpu_seconds(pids) for group, pids in groups.items()}
        if "server" in groups:
            main, other = stack.thread_cpu_seconds(groups["server"])
            sample["server_main_thread"] = main
            sample["server_other_threads"] = other
        if self.postgres_pid:
            sample["postgres"] = stack.tree_cpu_seconds(self.postgres_pid)
        own, children = (resource.getrusage(resource.RUSAGE_SELF),
                         resource.getrusage(resource.RUSAGE_CHILDREN))
        sample["bench_process"] = own.ru_utime + own.ru_stime
        sample["wrk"] = children.ru_utime + children.ru_stime
        return sample

    @staticmethod
    def cpu_ms_per(before: dict[str, float], after: dict[str, float],
                   count: int) -> dict[str, float]:
        return {group: round((after[group] - before[group]) * 1000 / max(1, count), 3)
                for group in before}

    def say(self, text: str) -> None:
        print(f"bench: {text}", file=sys.stderr, flush=True)

    def wrk(self, url: str, script: str, *, data: Path | None = None,
            connections: int | None = None, duration_s: int | None = None,
            delay_ms: int | None = None) -> WrkRun:
        return WrkRun(url=url, script=script, data=data,
                      duration_s=duration_s or self.options.duration_s,
                      connections=connections or self.options.connections,
                      threads=self.options.threads, delay_ms=delay_ms)

    def http(self, name: str, run: WrkRun, server: stack.Started, *,
             warmup: WrkRun | None = None, profile: bool = False) -> dict[str, Any]:
        """Warm up (when asked), then measure; optionally profile the measured run.

        Besides wrk's figures, the CPU time the serving process(es) and the servers
        spent per request: robust where throughput is not, on a shared machine."""
        if warmup is not None and self.options.warmup_s > 0:
            finish(warmup, warmup.start())
        if profile:
            stack.profile_signal(server, signal.SIGUSR1)
        self.say(f"{name}: {run.connections} connections, {run.duration_s}s, {run.url}")
        groups = {"server": stack.serving_pids(server.process), **self.service_pids}
        before = self.cpu_sample(groups)
        result = finish(run, run.start())
        requests = max(1, int(result["requests"]))
        result["cpu_ms_per_request"] = self.cpu_ms_per(before, self.cpu_sample(groups),
                                                       requests)
        result["cpu_ms_per_request"].pop("bench_process", None)
        cpu = result["cpu_ms_per_request"]
        # Cores kept busy by everything measured (at most the machine's CPUs).
        result["cores_busy"] = round(
            sum(v for k, v in cpu.items() if not k.startswith("server_"))
            * requests / 1000 / max(result["duration_s"], 1e-9), 2)
        result["server_cpu_share"] = round(
            result["cpu_ms_per_request"]["server"] * requests / 1000
            / max(result["duration_s"], 1e-9), 3)
        if profile:
            report = stack.collect_profile(server, name)
            result["profile"] = str(report) if report else None
        self.say(f"{name}: {result['rps']} req/s, p50 {result['p50_ms']} ms, "
                 f"p99 {result['p99_ms']} ms, errors {result['error_count']}, "
                 f"server CPU {result['cpu_ms_per_request']['server']} ms/request")
        return result

    def warmup_of(self, run: WrkRun, data: Path | None = None) -> WrkRun:
        return WrkRun(url=run.url, script=run.script, data=data or run.data,
                      duration_s=max(1, self.options.warmup_s), connections=run.connections,
                      threads=run.threads, delay_ms=run.delay_ms)

    # ------------------------------------------------------------------ HTTP scenarios

    def floor(self, floor: stack.Started, tokens: Path) -> dict[str, Any]:
        run = self.wrk(floor.url + "/floor", "get_bearer.lua", data=tokens)
        return self.http("floor", run, floor, warmup=self.warmup_of(run))

    def users_me(self, api: stack.Started, tokens: Path, name: str = "users_me",
                 profile: bool = False) -> dict[str, Any]:
        run = self.wrk(api.url + "/v1/users/me", "get_bearer.lua", data=tokens)
        return self.http(name, run, api, warmup=self.warmup_of(run), profile=profile)

    def peer_users_me(self, peer: stack.Started, tokens: Path) -> dict[str, Any]:
        """fastapi-users' GET /users/me (bench/peer_fastapi_users.py), one process."""
        run = self.wrk(peer.url + "/users/me", "get_bearer.lua", data=tokens)
        return self.http("peer_users_me", run, peer, warmup=self.warmup_of(run))

    def refresh(self, api: stack.Started, warm_tokens: Path, tokens: Path,
                profile: bool = False, name: str = "refresh") -> dict[str, Any]:
        run = self.wrk(api.url + "/v1/auth/refresh", "refresh.lua", data=tokens)
        return self.http(name, run, api, warmup=self.warmup_of(run, warm_tokens),
                         profile=profile)

    def login(self, api: stack.Started, accounts: Path,
              profile: bool = False) -> dict[str, Any]:
        run = self.wrk(api.url + "/v1/auth/login", "login.lua", data=accounts)
        return self.http("login", run, api, warmup=self.warmup_of(run), profile=profile)

    def probe(self, api: stack.Started) -> WrkRun:
        return self.wrk(api.url + "/healthz", "probe.lua",
                        connections=self.options.probe_connections,
                        delay_ms=self.options.probe_delay_ms)

    def healthz_idle(self, api: stack.Started) -> dict[str, Any]:
        return self.http("healthz_idle", self.probe(api), api)

    def healthz_under_login(self, api: stack.Started,
                            accounts: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """The paced /healthz probe and a saturating login load, at the same time."""
        load = self.wrk(api.url + "/v1/auth/login", "login.lua", data=accounts)
        probe = self.probe(api)
        self.say(f"healthz_under_login: probe {probe.connections} connections every "
                 f"{probe.delay_ms} ms while login runs with {load.connections}")
        load_proc = load.start()
        time.sleep(0.2)  # let login saturate first
        probe_proc = probe.start()
        probed = finish(probe, probe_proc)
        loaded = finish(load, load_proc)
        self.say(f"healthz_under_login: p99 {probed['p99_ms']} ms "
                 f"(login {loaded['rps']} req/s meanwhile)")
        return probed, loaded

    def healthz_under_cpu_load(self, api: stack.Started, env: AuthnodeEnv,
                               threads: int) -> dict[str, Any]:
        """Control (no target): the probe while another process hashes on ``threads``
        threads. Close to healthz_under_login means the API's hashing does not hold its
        event loop; the latency comes from sharing the CPUs."""
        probe = self.probe(api)
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.cpu_load", str(threads), str(probe.duration_s + 1)],
            env=env.os_env(), cwd=stack.ROOT, stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            probed = finish(probe, probe.start())
        finally:
            out, _ = load.communicate(timeout=probe.duration_s + 60)
        probed["cpu_load_verifies_per_s"] = float(out.strip() or 0)
        self.say(f"healthz_under_cpu_load: p99 {probed['p99_ms']} ms while another process "
                 f"verified {probed['cpu_load_verifies_per_s']:.1f} hashes/s on {threads} "
                 "threads")
        return probed

    # ------------------------------------------------------------------ floors

    def hash_bound(self, settings: Any, cpus: float) -> dict[str, Any]:
        """usable CPUs / the time of one argon2id verify at the configured parameters,
        timed here (argon2-cffi, in this process, one at a time)."""
        hasher = argon2.PasswordHasher(
            time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism, type=argon2.Type.ID)
        encoded = hasher.hash(stack.PASSWORD)
        hasher.verify(encoded, stack.PASSWORD)
        times, cpu_times = [], []
        for _ in range(HASH_SAMPLES):
            started, cpu_started = time.perf_counter(), time.thread_time()
            hasher.verify(encoded, stack.PASSWORD)
            times.append(time.perf_counter() - started)
            cpu_times.append(time.thread_time() - cpu_started)
        median_s = statistics.median(times)
        parallel = parallel_verifies_per_s(hasher, encoded, max(1, int(cpus)))
        result = {
            "argon2": {"memory_kib": settings.argon2_memory_kib,
                       "time_cost": settings.argon2_time_cost,
                       "parallelism": settings.argon2_parallelism},
            "samples": HASH_SAMPLES, "verify_ms_median": round(median_s * 1000, 3),
            "verify_ms_min": round(min(times) * 1000, 3),
            "verify_cpu_ms_median": round(statistics.median(cpu_times) * 1000, 3),
            "cpus": cpus,
            "hash_threads": settings.hash_threads, "rps": round(cpus / median_s, 1),
            # Not the floor: what int(cpus) threads verifying at once reach here (memory
            # bandwidth, caches, a noisy neighbour), i.e. how reachable the floor is.
            "parallel_threads": max(1, int(cpus)),
            "parallel_verifies_per_s": parallel,
        }
        self.say(f"hash_bound: one verify {result['verify_ms_median']} ms x {cpus} CPUs "
                 f"-> {result['rps']} logins/s ({parallel} verifies/s measured on "
                 f"{result['parallel_threads']} threads at once)")
        return result

    # ------------------------------------------------------------------ jobs

    def email(self, env: AuthnodeEnv, services: stack.Services,
              seed: stack.Seed) -> dict[str, Any]:
        """N password-reset emails through ``authnode serve --role worker`` to the
        recorder: rendered, a link token stored, sent over SMTP, recorded as sent."""
        url = env.variables["POSTGRES_URL"]
        services.smtp.clear()
        stack.settle_postgres(services.postgres)
        worker = stack.start_worker(env, profile_dir=self.profile_dir)
        groups = {"worker": [worker.proc.pid], **self.service_pids}
        profile = None
        try:
            if self.profile_dir is not None:
                os.kill(worker.proc.pid, signal.SIGUSR1)
            cpu_before = self.cpu_sample(groups)
            ids = asyncio.run(defer(url, SEND_EMAIL_TASK, EMAIL_QUEUE,
                                    self.job_arguments(seed)))
            self.say(f"email: {len(ids)} jobs queued for the running worker")
            drained(url, ids, timeout_s=120 + len(ids) / 5)
            cpu_after = self.cpu_sample(groups)
            if self.profile_dir is not None:
                profile = stack.collect_profile_of([worker.proc.pid], self.profile_dir,
                                                   "email_worker")
        finally:
            stack.stop(worker)
        result = job_rate(url, ids)
        result["cpu_ms_per_job"] = self.cpu_ms_per(cpu_before, cpu_after, len(ids))
        result["cpu_ms_per_job"].pop("wrk", None)
        result["worker_cpu_ms_per_job"] = result["cpu_ms_per_job"]["worker"]
        if profile is not None:
            result["profile"] = str(profile)
        result["smtp_received"] = len(services.smtp)
        services.smtp.clear()
        self.say(f"email: {result['jobs_per_s']} jobs/s ({result['succeeded']} sent), "
                 f"CPU ms/job {result['cpu_ms_per_job']}")
        return result

    def noop_jobs(self, env: AuthnodeEnv, services: stack.Services,
                  seed: stack.Seed) -> dict[str, Any]:
        url = env.variables["POSTGRES_URL"]
        stack.settle_postgres(services.postgres)
        log_path = env.workdir / "noop_jobs.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "bench.noop_jobs"],
                                      env=env.os_env(), cwd=stack.ROOT, stdout=log,
                                      stderr=subprocess.STDOUT)
        try:
            def ready() -> bool:
                if worker.poll() is not None:
                    raise RuntimeError(f"bench.noop_jobs exited:\n{log_path.read_text()}")
                return "ready" in log_path.read_text().split()

            stack.wait_until(ready, 60, "the no-op worker to start")
            groups = {"worker": [worker.pid], **self.service_pids}
            cpu_before = self.cpu_sample(groups)
            ids = asyncio.run(defer(url, NOOP_TASK, NOOP_QUEUE, self.job_arguments(seed)))
            self.say(f"noop_jobs: {len(ids)} jobs queued for a no-op procrastinate worker")
            drained(url, ids, timeout_s=120 + len(ids) / 5)
            cpu_after = self.cpu_sample(groups)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        result = job_rate(url, ids)
        result["cpu_ms_per_job"] = self.cpu_ms_per(cpu_before, cpu_after, len(ids))
        result["cpu_ms_per_job"].pop("wrk", None)
        result["worker_cpu_ms_per_job"] = result["cpu_ms_per_job"]["worker"]
        self.say(f"noop_jobs: {result['jobs_per_s']} jobs/s")
        return result

    def job_arguments(self, seed: stack.Seed) -> list[dict[str, Any]]:
        accounts = seed.accounts
        return [{"kind": "password_reset", "email": accounts[i % len(accounts)].email,
                 "user_id": accounts[i % len(accounts)].user_id}
                for i in range(self.options.email_jobs)]


def parallel_verifies_per_s(hasher: argon2.PasswordHasher, encoded: str, threads: int,
                            seconds: float = 3.0) -> float:
    """Verifies per second of ``threads`` threads verifying at once (argon2-cffi releases
    the GIL), in this process, for ``seconds``."""
    deadline = time.perf_counter() + seconds
    counts = [0] * threads

    def spin(index: int) -> None:
        while time.perf_counter() < deadline:
            hasher.verify(encoded, stack.PASSWORD)
            counts[index] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=spin, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return round(sum(counts) / (time.perf_counter() - started), 1)


async def defer(url: str, task: str, queue: str, jobs: list[dict[str, Any]]) -> list[int]:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    async with app.open_async():
        deferrer = app.configure_task(task, queue=queue)
        return list(await deferrer.batch_defer_async(*jobs))


def drained(url: str, ids: list[int], *, timeout_s: float) -> None:
    """Wait until none of ``ids`` is running or due."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s) AND "
                "(status = 'doing' OR (status = 'todo' AND "
                "(scheduled_at IS NULL OR scheduled_at <= now())))", (ids,)).fetchone()
            if row is not None and row[0] == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{row[0] if row else '?'} jobs still pending after "
                                   f"{timeout_s:.0f}s")
            time.sleep(0.05)


def job_rate(url: str, ids: list[int]) -> dict[str, Any]:
    """Jobs per second from the queue's own events: first start to last finish, so
    worker start-up is not counted."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE type = 'succeeded'), "
            "count(*) FILTER (WHERE type = 'failed' OR type = 'deferred_for_retry'), "
            "min(at) FILTER (WHERE type = 'started'), "
            "max(at) FILTER (WHERE type IN ('succeeded', 'failed')) "
            "FROM procrastinate_events WHERE job_id = ANY(%s)", (ids,)).fetchone()
    assert row is not None
    succeeded, failed, first, last = row
    seconds = (last - first).total_seconds() if first and last else 0.0
    return {"jobs": len(ids), "succeeded": succeeded, "failed": failed,
            "seconds": round(seconds, 3),
            "jobs_per_s": round(succeeded / seconds, 1) if seconds > 0 else None,
            "error_count": failed}
