"""Run ``wrk`` with one of ``bench/lua/*.lua`` and read the line its ``done()`` prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
RESULT_PREFIX = "BENCH_RESULT "
REQUEST_TIMEOUT_S = 10


class WrkError(RuntimeError):
    pass


def wrk_binary() -> str:
    found = os.environ.get("WRK_BIN") or shutil.which("wrk") or "/usr/bin/wrk"
    if not Path(found).exists():
        raise WrkError("wrk not found: install the Debian package `wrk` (scripts/bootstrap.sh)")
    return found


def wrk_version() -> str:
    done = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).splitlines()[0].strip()


@dataclass(frozen=True)
class WrkRun:
    """One wrk invocation: ``url`` under load from ``script`` for ``duration_s``."""

    url: str
    script: str
    duration_s: int
    connections: int
    threads: int = 1
    data: Path | None = None
    delay_ms: int | None = None

    def command(self) -> list[str]:
        return [wrk_binary(), "-t", str(self.threads), "-c", str(self.connections),
                "-d", f"{self.duration_s}s", "--timeout", f"{REQUEST_TIMEOUT_S}s",
                "-s", str(LUA_DIR / self.script), self.url]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["BENCH_LUA_DIR"] = str(LUA_DIR)
        env["BENCH_THREADS"] = str(self.threads)
        env["BENCH_DATA"] = str(self.data or "/dev/null")
        if self.delay_ms is not None:
            env["BENCH_DELAY_MS"] = str(self.delay_ms)
        return env

    def start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(), env=self.environment(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def run(self) -> dict[str, object]:
        return finish(self, self.start())


def finish(run: WrkRun, proc: subprocess.Popen[str]) -> dict[str, object]:
    """Wait for a started run and turn its result line into figures (ms, req/s)."""
    try:
        out, err = proc.communicate(timeout=run.duration_s + REQUEST_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise WrkError(f"wrk did not finish: {run.command()}\n{out}\n{err}") from None
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise WrkError(f"wrk failed ({proc.returncode}): {' '.join(run.command())}\n"
                       f"{out}\n{err}")
    raw = json.loads(lines[-1][len(RESULT_PREFIX):])
    duration_s = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    errors = {name: int(count) for name, count in raw["errors"].items()}
    return {
        "url": run.url,
        "script": run.script,
        "connections": run.connections,
        "threads": run.threads,
        "duration_s": round(duration_s, 3),
        "requests": raw["requests"],
        "rps": round(raw["requests"] / duration_s, 1) if duration_s else 0.0,
        "mean_ms": round(latency["mean"] / 1000, 3),
        "p50_ms": round(latency["p50"] / 1000, 3),
        "p90_ms": round(latency["p90"] / 1000, 3),
        "p99_ms": round(latency["p99"] / 1000, 3),
        "p999_ms": round(latency["p999"] / 1000, 3),
        "max_ms": round(latency["max"] / 1000, 3),
        "errors": errors,
        "error_count": sum(errors.values()),
        "starved": raw.get("starved", 0),
    }
