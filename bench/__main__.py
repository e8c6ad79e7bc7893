"""``python -m bench``: authnode against its own physical limits, in one run.

Starts the test suite's ephemeral servers, seeds verified users through the API, runs
every scenario with wrk next to its floor, prints a table, and writes
``bench/results/latest.json`` and ``latest.png``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from authnode.settings import load_settings  # noqa: E402
from authnode.tuning import read_host_resources  # noqa: E402
from bench import report, stack  # noqa: E402
from bench.scenarios import HEALTHZ_RUNS, Options, Runner, evaluate  # noqa: E402
from bench.wrk import wrk_binary, wrk_version  # noqa: E402

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "latest.json"
ALL_SCENARIOS = ("users_me", "refresh", "login", "healthz", "email", "workers2", "peer")
FERRETDB_BACKENDS = ("postgresql", "sqlite")
READ_ROUNDS = 3  # interleaved floor / users_me / peer rounds; the median one is kept


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=int, default=None, metavar="S",
                        help="seconds per measured run (default 10; --quick: 1)")
    parser.add_argument("--warmup", type=int, default=None, metavar="S",
                        help="seconds of wrk warm-up before each HTTP run (default 2; "
                             "--quick: 0)")
    parser.add_argument("--connections", type=int, default=None, metavar="N",
                        help="wrk connections (default 32; --quick: 8)")
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="wrk threads")
    parser.add_argument("--email-jobs", type=int, default=None, metavar="N",
                        help="jobs per job scenario (default 50 x duration, at least 50)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 s per scenario, no warm-up, 8 connections")
    parser.add_argument("--only", default=",".join(ALL_SCENARIOS), metavar="LIST",
                        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)}")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="PATH",
                        help="JSON results (the PNG goes next to it, same name .png)")
    parser.add_argument("--ferretdb", choices=(*FERRETDB_BACKENDS, "both"), default=None,
                        help="FerretDB's backend (default: AUTHNODE_TEST_FERRETDB_HANDLER, "
                             "else postgresql); both: run everything once per backend, "
                             "write the SQLite run next to --output as NAME.sqlite.json, "
                             "and print what the backend costs")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="run the --workers 1 API (and the email worker) under "
                             "pyinstrument and write one call tree per HTTP scenario "
                             "(and email_worker) into DIR (slows it down: the "
                             "figures of such a run are not comparable)")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) in --only: {', '.join(sorted(unknown))}")
    return args


def options_from(args: argparse.Namespace) -> Options:
    duration = args.duration or (1 if args.quick else 10)
    email_jobs = args.email_jobs or max(50, 50 * duration)
    return Options(
        duration_s=duration,
        warmup_s=args.warmup if args.warmup is not None else (0 if args.quick else 2),
        connections=args.connections or (8 if args.quick else 32),
        threads=args.threads,
        email_jobs=email_jobs,
    )


def run(args: argparse.Namespace, ferretdb_backend: str | None = None) -> dict[str, Any]:
    options = options_from(args)
    only = set(args.only.split(","))
    wrk_binary()  # fail before starting anything
    started_at = datetime.now(UTC)
    load_start = os.getloadavg()
    scenarios: dict[str, dict[str, Any]] = {}
    processes: list[dict[str, Any]] = []
    services = stack.Services(ferretdb_backend)
    api: stack.Started | None = None
    floor: stack.Started | None = None
    worker = None
    try:
        print(f"bench: starting redis (single), postgresql, ferretdb (on "
              f"{services.ferretdb_backend}), smtp recorder", file=sys.stderr, flush=True)
        services.start()
        workdir = services.dir / "authnode"
        workdir.mkdir()
        data = services.dir / "data"
        data.mkdir()
        env = services.environment(workdir)
        migrated = env.run("migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"authnode migrate failed:\n{migrated.stderr}")
        settings = load_settings(env.os_env(), host=read_host_resources())
        cpus = read_host_resources().cpus
        runner = Runner(options, data, service_pids={
            "redis": [services.redis.pid or 0], "ferretdb": [services.mongo.pid or 0]},
            postgres_pid=services.postgres.pid, profile_dir=args.profile)

        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        api = stack.start_api(env, workers=1, profile_dir=args.profile)
        worker = stack.start_worker(env)
        users = max(options.connections, 8)
        # Refresh chains (warm-up, measured) for --workers 1 and for --workers 2, twice
        # the connections each.
        seed = stack.seed(api.url, services.smtp, users=users, refresh_sets=4,
                          sessions_per_set=2 * options.connections)
        stack.stop(worker)
        worker = None
        runner.say(f"seeded {len(seed.accounts)} verified users; /v1/users/me answers "
                   f"{seed.me_body_bytes} bytes")
        tokens = stack.write_lines(data / "access_tokens.txt", seed.access_tokens)
        accounts = stack.write_lines(data / "accounts.txt",
                                     [f"{a.email}\t{a.password}" for a in seed.accounts])
        refresh_warm = stack.write_lines(data / "refresh_warm.txt", seed.refresh_sets[0])
        refresh_run = stack.write_lines(data / "refresh_run.txt", seed.refresh_sets[1])
        refresh2_warm = stack.write_lines(data / "refresh2_warm.txt", seed.refresh_sets[2])
        refresh2_run = stack.write_lines(data / "refresh2_run.txt", seed.refresh_sets[3])
        profiling = args.profile is not None

        w1: dict[str, Any] = {"workers": 1, "ready_s": round(api.ready_s, 3),
                              "all_ready_s": round(api.all_ready_s or api.ready_s, 3),
                              "rss_mib_when_ready": api.extra["rss_mib_when_ready"]}
        if only & {"users_me", "refresh", "workers2", "peer"}:
            floor = stack.start_floor(env, seed.me_body_bytes)
            try:
                scenarios.update(read_rounds(runner, env, services, data, users, api, floor,
                                             tokens, only, profiling))
            finally:
                stack.stop(floor.process)
                floor = None
        w1["serving"] = [{"pid": pid, "rss_mib": stack.vm_rss_mib(pid)}
                         for pid in stack.serving_pids(api.process)]
        w1["warmed_by"] = "seeding (register, verify, login: argon2) and GET /v1/users/me"
        if "refresh" in only:
            scenarios["refresh"] = runner.refresh(api, refresh_warm, refresh_run,
                                                  profile=profiling)
        if only & {"login", "healthz"}:
            scenarios["hash_bound"] = runner.hash_bound(settings, cpus)
        if "login" in only:
            scenarios["login"] = runner.login(api, accounts, profile=profiling)
        if "healthz" in only:
            scenarios["healthz_idle"] = runner.healthz_idle(api)
            # The worst of HEALTHZ_RUNS runs is held to the target: one lucky run proves
            # nothing on a shared machine.
            runs = [runner.healthz_under_login(api, accounts) for _ in range(HEALTHZ_RUNS)]
            probed, loaded = max(runs, key=lambda run: run[0]["p99_ms"])
            probed["runs_p99_ms"] = [run[0]["p99_ms"] for run in runs]
            scenarios["healthz_under_login"] = probed
            scenarios["login_during_probe"] = loaded
            scenarios["healthz_under_cpu_load"] = runner.healthz_under_cpu_load(
                api, env, settings.hash_threads)
        if "email" in only:
            scenarios["email"] = runner.email(env, services, seed)
            scenarios["noop_jobs"] = runner.noop_jobs(env, services, seed)
        w1["rss_mib_at_end"] = [stack.vm_rss_mib(pid)
                                for pid in stack.serving_pids(api.process)]
        processes.append(w1)
        stack.stop(api.process)
        api = None

        if "workers2" in only:
            api = stack.start_api(env, workers=2)
            scenarios["users_me_workers2"] = runner.users_me(api, tokens,
                                                             name="users_me_workers2")
            if "refresh" in only:
                scenarios["refresh_workers2"] = runner.refresh(
                    api, refresh2_warm, refresh2_run, name="refresh_workers2")
            processes.append({
                "workers": 2, "ready_s": round(api.ready_s, 3),
                "all_ready_s": round(api.all_ready_s or api.ready_s, 3),
                "rss_mib_when_ready": api.extra["rss_mib_when_ready"],
                "serving": [{"pid": pid, "rss_mib": stack.vm_rss_mib(pid)}
                            for pid in stack.serving_pids(api.process)],
                "warmed_by": "GET /v1/users/me (no hashing)"})
            stack.stop(api.process)
            api = None
    finally:
        for process in (worker, api.process if api else None,
                        floor.process if floor else None):
            if process is not None:
                process.kill()
        services.stop()

    return {
        "schema": 1,
        "generated_at": started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": "python -m bench " + shlex.join(sys.argv[1:]),
        "machine": {
            "cpus": cpus, "platform": platform.platform(),
            "python": platform.python_version(), "wrk": wrk_version(),
            "load_avg_1m_before": round(load_start[0], 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "wall_s": round((datetime.now(UTC) - started_at).total_seconds(), 1),
        },
        "config": {
            "duration_s": options.duration_s, "warmup_s": options.warmup_s,
            "connections": options.connections, "wrk_threads": options.threads,
            "healthz_probe": {"connections": options.probe_connections,
                              "delay_ms": options.probe_delay_ms},
            "email_jobs": options.email_jobs, "redis_mode": "single",
            "ferretdb_backend": services.ferretdb_backend,
            "argon2": {"memory_kib": settings.argon2_memory_kib,
                       "time_cost": settings.argon2_time_cost,
                       "parallelism": settings.argon2_parallelism},
            "hash_threads": settings.hash_threads,
            "worker_concurrency": settings.worker_concurrency,
            "profiled": args.profile is not None,
            "settings": dict(stack.BENCH_SETTINGS, SECRET_KEY="(bench)"),
        },
        "scenarios": scenarios,
        "processes": processes,
        "checks": evaluate(scenarios),
    }


def read_rounds(runner: Runner, env: stack.AuthnodeEnv, services: stack.Services,
                data: Path, users: int, api: stack.Started, floor: stack.Started,
                tokens: Path, only: set[str], profiling: bool) -> dict[str, Any]:
    """The authenticated read next to its floor and its peer, in READ_ROUNDS interleaved
    rounds (floor, users_me, fastapi-users), every process up throughout.

    This machine's speed per core drifts between runs a minute apart (bench/README.md,
    "Final run"), so one floor run and one users_me run can disagree by a third. The
    scenarios kept are the whole round whose users_me / floor ratio is the median, so
    every ratio still compares runs of the same round; every round is in ``rounds``."""
    peer: stack.Started | None = None
    peer_tokens: Path | None = None
    skipped: dict[str, Any] | None = None
    if "peer" in only:
        if stack.peer_python() is None:
            runner.say(f"peer: skipped, no {stack.PEER_VENV} (bench/README.md, 'The peer')")
            skipped = {"skipped": f"no {stack.PEER_VENV.relative_to(ROOT)}"}
        else:
            peer = stack.start_peer(env, services.postgres)
    try:
        if peer is not None:
            peer_tokens = stack.write_lines(data / "peer_tokens.txt",
                                            stack.peer_tokens(peer.url, users))
        rounds: list[dict[str, Any]] = []
        for number in range(READ_ROUNDS if only & {"users_me", "workers2"} else 1):
            found: dict[str, Any] = {"floor": runner.floor(floor, tokens)}
            if only & {"users_me", "workers2"}:
                found["users_me"] = runner.users_me(api, tokens,
                                                    profile=profiling and number == 0)
            if peer is not None and peer_tokens is not None:
                found["peer_users_me"] = runner.peer_users_me(peer, peer_tokens)
                found["peer_users_me"]["ready_s"] = round(peer.ready_s, 3)
            elif skipped is not None:
                found["peer_users_me"] = skipped
            rounds.append(found)
    finally:
        if peer is not None:
            stack.stop(peer.process)
    chosen = sorted(rounds, key=_read_ratio)[len(rounds) // 2]
    if len(rounds) > 1:
        chosen["users_me"]["rounds"] = [_round_summary(found) for found in rounds]
        runner.say("read rounds (users_me / floor, users_me / peer): " + ", ".join(
            f"{r['users_me_rps_ratio']} {r.get('users_me_vs_peer', '-')}"
            for r in chosen["users_me"]["rounds"]) + "; kept the median")
    return chosen


def _read_ratio(found: dict[str, Any]) -> float:
    return float(found.get("users_me", found["floor"])["rps"]) / max(
        float(found["floor"]["rps"]), 1e-9)


def _round_summary(found: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "floor_rps": found["floor"]["rps"], "users_me_rps": found["users_me"]["rps"],
        "users_me_rps_ratio": round(_read_ratio(found), 3),
        "floor_cpu_ms": found["floor"]["cpu_ms_per_request"]["server"],
        "users_me_cpu_ms": found["users_me"]["cpu_ms_per_request"]["server"]}
    peer = found.get("peer_users_me")
    if peer and "rps" in peer:
        summary["peer_rps"] = peer["rps"]
        summary["peer_cpu_ms"] = peer["cpu_ms_per_request"]["server"]
        summary["users_me_vs_peer"] = round(
            float(found["users_me"]["rps"]) / max(float(peer["rps"]), 1e-9), 3)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    backends = FERRETDB_BACKENDS if args.ferretdb == "both" else (args.ferretdb,)
    runs: list[tuple[str, dict[str, Any]]] = []
    for backend in backends:
        results = run(args, backend)
        checks = [c for c in results["checks"] if c["met"] is not None]
        results["all_met"] = all(c["met"] for c in checks) if checks else None
        output: Path = args.output
        if backend == "sqlite" and args.ferretdb == "both":
            output = output.with_suffix(".sqlite.json")
        report.write_json(results, output)
        report.draw(results, output.with_suffix(".png"))
        print(report.table(results))
        print(f"\nwrote {output} and {output.with_suffix('.png')}")
        runs.append((results["config"]["ferretdb_backend"], results))
    if len(runs) > 1:
        print(report.backend_costs(runs))
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
