"""``python -m bench.seeding_ab [ROUNDS]``: does a seeded API process read slower?

Starts the bench's servers, one ``--workers 1`` API that seeds the users (register,
verify, log in: argon2, refresh chains, as ``python -m bench`` does) and one fresh
``--workers 1`` API, then measures ``GET /v1/users/me`` on each in turn, ROUNDS times
(default 4, 5 s each), and prints the server CPU per request of each round and the
medians. Interleaving puts both processes under the same machine drift
(bench/README.md, "The reads run in three interleaved rounds").
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import stack  # noqa: E402
from bench.scenarios import Options, Runner  # noqa: E402


def main(rounds: int) -> None:
    services = stack.Services()
    services.start()
    apis: list[stack.Started] = []
    try:
        workdir = services.dir / "authnode"
        workdir.mkdir()
        data = services.dir / "data"
        data.mkdir()
        env = services.environment(workdir)
        if env.run("migrate").returncode != 0:
            raise RuntimeError("authnode migrate failed")
        runner = Runner(Options(duration_s=5, warmup_s=1), data,
                        service_pids={"redis": [services.redis.pid or 0],
                                      "ferretdb": [services.mongo.pid or 0]},
                        postgres_pid=services.postgres.pid, profile_dir=None)
        seeded = stack.start_api(env, workers=1)
        apis.append(seeded)
        worker = stack.start_worker(env)
        try:
            seed = stack.seed(seeded.url, services.smtp, users=32, refresh_sets=4,
                              sessions_per_set=64)
        finally:
            stack.stop(worker)
        fresh = stack.start_api(env, workers=1)
        apis.append(fresh)
        tokens = stack.write_lines(data / "access_tokens.txt", seed.access_tokens)
        cpu: dict[str, list[float]] = {"seeded": [], "fresh": []}
        for number in range(rounds):
            for name, api in (("seeded", seeded), ("fresh", fresh)):
                result = runner.users_me(api, tokens, name=f"{name}_{number}")
                cpu[name].append(float(result["cpu_ms_per_request"]["server"]))
        for name, values in cpu.items():
            print(f"{name}: server CPU ms per read {values}, median "
                  f"{statistics.median(values):.3f}")
    finally:
        for api in apis:
            stack.stop(api.process)
        services.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
