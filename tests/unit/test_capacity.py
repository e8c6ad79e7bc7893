"""``authnode capacity``: the planner's arithmetic, its trace, and the shipped costs."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from authnode.capacity import (
    Costs,
    Usage,
    as_table,
    costs_from_bench,
    plan,
    shipped_costs,
)
from authnode.cli import main
from authnode.settings import parse_env_file

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "results" / "latest.json"


def test_shipped_cpu_costs_are_those_of_the_committed_bench_results() -> None:
    shipped = shipped_costs()
    fresh = costs_from_bench(json.loads(BENCH.read_text()), shipped, "bench/results/latest.json")
    assert fresh == shipped, "re-copy the bench figures into authnode/capacity_costs.json"


def test_the_peak_rates_and_cores_follow_from_inputs_and_measured_costs() -> None:
    costs = shipped_costs()
    usage = Usage(users=1_000_000)
    figures = plan(usage, costs)["figures"]
    active = 1_000_000 * usage.daily_active_share
    logins = active * usage.logins_per_active_user_per_day / 86_400 * usage.peak_to_average
    refreshes = active * usage.active_hours_per_day * usage.refreshes_per_active_hour \
        / 86_400 * usage.peak_to_average
    reads = active * usage.active_hours_per_day * 60 * usage.profile_reads_per_minute \
        / 86_400 * usage.peak_to_average
    assert figures["peak_login_per_s"]["value"] == pytest.approx(logins)
    assert figures["peak_refresh_per_s"]["value"] == pytest.approx(refreshes)
    assert figures["peak_profile_read_per_s"]["value"] == pytest.approx(reads)
    busy = (logins * costs.api_cpu_ms["login"] + refreshes * costs.api_cpu_ms["refresh"]
            + reads * costs.api_cpu_ms["profile_read"]) / 1000
    assert figures["api_busy_cores"]["value"] == pytest.approx(busy)
    assert figures["api_processes"]["value"] == max(2, math.ceil(busy / 0.5))
    assert figures["redis_ops_per_s"]["value"] == pytest.approx(
        logins * costs.redis_commands["login"] + refreshes * costs.redis_commands["refresh"]
        + reads * costs.redis_commands["profile_read"])
    assert figures["redis_memory_bytes"]["value"] == pytest.approx(
        figures["redis_cached_profiles"]["value"] * costs.redis_bytes_per_profile)


def test_every_figure_says_how_it_was_computed_from_named_inputs_or_costs() -> None:
    result = plan(Usage(users=1_000_000), shipped_costs())
    known = ({f.name for f in fields(Usage)} | {f.name for f in fields(Costs)}
             | set(result["figures"]))
    for name, figure in result["figures"].items():
        words = set(re.findall(r"[a-z_]+", figure["how"]))
        assert words & known, (name, figure["how"])
    assert result["inputs"] == asdict(Usage(users=1_000_000))
    assert set(result["costs"]["source"]) == {"cpu", "redis", "mongodb_ops"}


def test_ten_times_the_users_is_ten_times_the_load() -> None:
    small = plan(Usage(users=1_000_000), shipped_costs())["figures"]
    large = plan(Usage(users=10_000_000), shipped_costs())["figures"]
    for name in ("api_busy_cores", "redis_ops_per_s", "mongodb_ops_per_s",
                 "redis_memory_bytes", "peak_emails_per_s"):
        assert large[name]["value"] == pytest.approx(10 * small[name]["value"])


@pytest.mark.parametrize(("users", "preset"), [
    (1, "starter"), (10_000, "starter"), (10_001, "growth"), (100_000, "growth"),
    (100_001, "high-scale"), (50_000_000, "high-scale"),
])
def test_the_preset_that_fits_and_its_pool_size(users: int, preset: str) -> None:
    result = plan(Usage(users=users), shipped_costs())
    assert result["preset"] == preset
    pool = int(parse_env_file(ROOT / "config" / f"{preset}.env")["DB_POOL_SIZE"])
    figures = result["figures"]
    processes = figures["api_processes"]["value"] + figures["worker_processes"]["value"]
    assert figures["mongodb_connections"]["value"] == processes * pool


def test_the_binding_constraint_is_the_resource_nearest_its_limit() -> None:
    roomy = plan(Usage(users=1_000_000, mongodb_max_connections=100_000,
                       postgres_max_connections=100_000), shipped_costs())
    assert roomy["binding_constraint"] == "Redis CPU (one node)" and roomy["fits"]
    tight = plan(Usage(users=1_000_000, mongodb_max_connections=200), shipped_costs())
    assert tight["binding_constraint"] == "MongoDB connections"
    assert not tight["fits"]
    assert "binding constraint: MongoDB connections (DOES NOT FIT)" in as_table(tight)


def test_no_users_is_refused() -> None:
    with pytest.raises(ValueError, match="users"):
        plan(Usage(users=0), shipped_costs())


def test_the_command_prints_a_table_or_json(tmp_path: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["capacity", "--users", "1000000"])
    assert table.exit_code == 0, table.output
    assert "binding constraint:" in table.output and "preset: high-scale" in table.output
    as_json = runner.invoke(main, ["capacity", "--users", "1000000", "--costs", str(BENCH),
                                   "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.output)
    assert result["costs"]["source"]["cpu"].startswith(str(BENCH))
    assert result["figures"]["api_processes"]["value"] >= 2
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    refused = runner.invoke(main, ["capacity", "--users", "10", "--costs", str(bad)])
    assert refused.exit_code == 2 and "not a bench results file" in refused.output
