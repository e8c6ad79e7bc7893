"""``python -m bench --quick`` runs every scenario (one second each) end to end and writes
a valid results file and chart. Only that it works: its figures are not checked (they are
noisy, and the targets are the benchmark's business, not the test suite's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.alone

ROOT = Path(__file__).resolve().parents[2]

# peer_users_me: bench/.peer-venv, made by make bootstrap
HTTP_RUNS = ("floor", "users_me", "peer_users_me", "refresh", "login", "healthz_idle",
             "healthz_under_login", "login_during_probe", "healthz_under_cpu_load",
             "users_me_workers2", "refresh_workers2")
JOB_RUNS = ("email", "noop_jobs")
CHECKS = {"users_me_rps", "users_me_p99", "refresh_rps", "login_rps", "healthz_p99",
          "email_rate", "users_me_vs_peer", "refresh_scaling", "workers_scaling"}


@pytest.mark.slow
def test_quick_bench_runs_every_scenario_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"

    results = json.loads(output.read_text())
    assert results["config"]["duration_s"] == 1
    scenarios = results["scenarios"]
    for name in HTTP_RUNS:
        run = scenarios[name]
        assert run["duration_s"] > 0.5, (name, run)
        assert run["requests"] > 0, (name, run)
        assert run["errors"]["status"] == 0, (name, run)
        assert run["p99_ms"] >= run["p50_ms"] > 0, (name, run)
    for name in JOB_RUNS:
        run = scenarios[name]
        assert run["succeeded"] == run["jobs"] > 0, (name, run)
        assert run["jobs_per_s"] > 0, (name, run)
    assert scenarios["email"]["smtp_received"] == scenarios["email"]["jobs"]
    assert scenarios["hash_bound"]["rps"] > 0
    assert len(scenarios["healthz_under_login"]["runs_p99_ms"]) == 3  # the worst of three
    rounds = scenarios["users_me"]["rounds"]  # interleaved read rounds, the median kept
    assert len(rounds) == 3
    kept = scenarios["users_me"]["rps"] / scenarios["floor"]["rps"]
    assert round(kept, 3) == sorted(r["users_me_rps_ratio"] for r in rounds)[1]
    assert all("users_me_vs_peer" in r for r in rounds)
    assert {check["check"] for check in results["checks"]} == CHECKS
    assert all(isinstance(check["ratio"], float) for check in results["checks"])
    assert [p["workers"] for p in results["processes"]] == [1, 2]
    for process in results["processes"]:
        assert process["ready_s"] > 0
        assert all(p["rss_mib"] > 0 for p in process["serving"])
    assert len(results["processes"][1]["serving"]) == 2

    png = output.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert "users_me_rps" in done.stdout  # the printed table
