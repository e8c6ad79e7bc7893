"""``authnode capacity``: how many processes, cores and connections a user base needs.

Pure arithmetic on two kinds of figures, and nothing else, so every number of a plan can
be traced (the JSON output carries the trace):

* inputs: the user base and its habits (:class:`Usage`) and the limits of the servers;
* measured costs (:class:`Costs`): CPU milliseconds per request of each kind from the
  bench (``bench/results/latest.json``, a copy ships as ``capacity_costs.json``), and the
  Redis bytes and commands per operation measured against a real Redis by
  tests/integration/test_capacity_redis.py.

The model: peak requests/s of each kind = daily count / 86 400 x peak-to-average ratio.
CPU = requests/s x measured CPU ms. API pods run one process on one core and the
autoscaler keeps them at 50 % CPU, so API cores = busy cores / 0.5. Connections = pods x
pool size of the chosen preset. The binding constraint is the resource nearest its limit.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from importlib import resources
from typing import Any

SECONDS_PER_DAY = 86_400
DAYS_PER_MONTH = 30
# The chart's HPA target: pods are added when CPU passes 50 %.
API_TARGET_CPU_SHARE = 0.5
# Workers are not latency-bound (a queue absorbs bursts): fill them further.
WORKER_TARGET_CPU_SHARE = 0.7
# At least two API pods, so one can be replaced or lost (the chart's PDB allows one down).
MIN_API_PROCESSES = 2
# Redis runs commands on one core; past half of it latency grows fast.
REDIS_USABLE_CORE_SHARE = 0.5
# The seed's presets: (name, up to this many users, DB_POOL_SIZE, WORKER_CONCURRENCY),
# pool sizes as config/<name>.env sets them.
PRESETS: tuple[tuple[str, float, int, int], ...] = (
    ("starter", 10_000, 10, 5),
    ("growth", 100_000, 50, 20),
    ("high-scale", math.inf, 100, 50),
)
# Bench scenario per operation (bench/scenarios.py).
SCENARIOS = {"login": "login", "refresh": "refresh", "profile_read": "users_me"}


@dataclass(frozen=True)
class Usage:
    """The user base; the defaults are assumptions, printed with every plan."""

    users: int
    daily_active_share: float = 0.2
    logins_per_active_user_per_day: float = 1.0
    active_hours_per_day: float = 1.0
    # Access tokens live 15 min (ACCESS_TOKEN_TTL): an open client refreshes 4 times an hour.
    refreshes_per_active_hour: float = 4.0
    profile_reads_per_minute: float = 1.0
    emails_per_user_per_month: float = 1.0
    peak_to_average: float = 3.0
    mongodb_max_connections: int = 1500
    postgres_max_connections: int = 100
    postgres_pool_size: int = 10  # POSTGRES_POOL_SIZE tuned for one core (authnode.tuning)


@dataclass(frozen=True)
class Costs:
    """Measured costs per operation; ``source`` says where they were measured."""

    api_cpu_ms: dict[str, float]  # per request, by operation
    redis_cpu_ms: dict[str, float]
    mongodb_cpu_ms: dict[str, float]  # FerretDB's CPU in the bench
    email_worker_cpu_ms: float  # per email job
    redis_commands: dict[str, float]  # per request, by operation
    redis_bytes_per_profile: float  # one cached profile (MEMORY USAGE)
    mongodb_ops: dict[str, float]  # per request, by operation
    source: dict[str, str]  # "cpu", "redis", "mongodb_ops": where each group comes from


def costs_from_bench(bench: dict[str, Any], base: Costs, origin: str) -> Costs:
    """``base`` with its CPU costs replaced by those of a bench results file."""
    scenarios = bench["scenarios"]

    def per_request(side: str) -> dict[str, float]:
        return {op: float(scenarios[name]["cpu_ms_per_request"][side])
                for op, name in SCENARIOS.items()}

    return replace(
        base,
        api_cpu_ms=per_request("server"),
        redis_cpu_ms=per_request("redis"),
        mongodb_cpu_ms=per_request("ferretdb"),
        email_worker_cpu_ms=float(scenarios["email"]["worker_cpu_ms_per_job"]),
        source={**base.source, "cpu": f"{origin} (bench of {bench['generated_at']}, "
                                      f"{bench['machine']['cpus']:g} CPUs)"},
    )


def shipped_costs() -> Costs:
    """The copy of the measured figures that ships with the package."""
    text = resources.files("authnode").joinpath("capacity_costs.json").read_text("utf-8")
    data = json.loads(text)
    return Costs(**data)


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    how: str  # the arithmetic, naming inputs and measured costs


def plan(usage: Usage, costs: Costs) -> dict[str, Any]:
    """The plan: figures by name, each with how it was computed; the binding constraint;
    the preset that fits; the inputs and costs it used."""
    if usage.users < 1:
        raise ValueError("users must be at least 1")
    f: dict[str, Figure] = {}
    active = usage.users * usage.daily_active_share
    f["daily_active_users"] = Figure(active, "users", "users x daily_active_share")
    peak = usage.peak_to_average
    per_day = {
        "login": active * usage.logins_per_active_user_per_day,
        "refresh": active * usage.active_hours_per_day * usage.refreshes_per_active_hour,
        "profile_read": active * usage.active_hours_per_day * 60
        * usage.profile_reads_per_minute,
    }
    habits = {"login": "logins_per_active_user_per_day",
              "refresh": "active_hours_per_day x refreshes_per_active_hour",
              "profile_read": "active_hours_per_day x 60 x profile_reads_per_minute"}
    rates = {op: n / SECONDS_PER_DAY * peak for op, n in per_day.items()}
    for op, rate in rates.items():
        f[f"peak_{op}_per_s"] = Figure(rate, "requests/s", f"daily_active_users x {habits[op]}"
                                       " / 86400 x peak_to_average")
    emails_per_s = usage.users * usage.emails_per_user_per_month / DAYS_PER_MONTH \
        / SECONDS_PER_DAY * peak
    f["peak_emails_per_s"] = Figure(emails_per_s, "jobs/s", "users x emails_per_user_per_month"
                                    " / 30 / 86400 x peak_to_average")

    def weighted(cost: dict[str, float]) -> float:
        return sum(rates[op] * cost[op] for op in rates)

    api_busy = weighted(costs.api_cpu_ms) / 1000
    f["api_busy_cores"] = Figure(api_busy, "cores", "sum of peak requests/s x measured "
                                 "api_cpu_ms per request / 1000")
    api_processes = max(MIN_API_PROCESSES, math.ceil(api_busy / API_TARGET_CPU_SHARE))
    f["api_processes"] = Figure(api_processes, "processes (1 core each)",
                                f"max({MIN_API_PROCESSES}, ceil(api_busy_cores / "
                                f"{API_TARGET_CPU_SHARE}: the HPA's CPU target))")
    f["api_cores"] = Figure(api_processes, "cores", "api_processes x 1 core")
    worker_busy = emails_per_s * costs.email_worker_cpu_ms / 1000
    worker_processes = max(1, math.ceil(worker_busy / WORKER_TARGET_CPU_SHARE))
    f["worker_busy_cores"] = Figure(worker_busy, "cores",
                                    "peak_emails_per_s x measured email_worker_cpu_ms / 1000")
    f["worker_processes"] = Figure(worker_processes, "processes (1 core each)",
                                   f"max(1, ceil(worker_busy_cores / {WORKER_TARGET_CPU_SHARE}))")

    redis_ops = weighted(costs.redis_commands)
    f["redis_ops_per_s"] = Figure(redis_ops, "commands/s", "sum of peak requests/s x measured "
                                  "redis_commands per request")
    redis_busy = weighted(costs.redis_cpu_ms) / 1000
    f["redis_busy_cores"] = Figure(redis_busy, "cores", "sum of peak requests/s x measured "
                                   "redis_cpu_ms per request / 1000")
    # A profile stays cached PROFILE_CACHE_TTL after its last read; those read within it
    # are at most the users active at the peak hour.
    cached = min(active, active * usage.active_hours_per_day / 24 * peak)
    f["redis_cached_profiles"] = Figure(cached, "keys", "min(daily_active_users, daily_active"
                                        "_users x active_hours_per_day / 24 x peak_to_average)")
    f["redis_memory_bytes"] = Figure(cached * costs.redis_bytes_per_profile, "bytes",
                                     "redis_cached_profiles x measured redis_bytes_per_profile")
    f["mongodb_ops_per_s"] = Figure(weighted(costs.mongodb_ops), "operations/s",
                                    "sum of peak requests/s x mongodb_ops per request")
    mongodb_busy = weighted(costs.mongodb_cpu_ms) / 1000
    f["mongodb_busy_cores"] = Figure(mongodb_busy, "cores", "sum of peak requests/s x "
                                     "measured mongodb_cpu_ms per request / 1000")

    preset, up_to, pool, _ = next(p for p in PRESETS if usage.users <= p[1])
    f["mongodb_connections"] = Figure(
        (api_processes + worker_processes) * pool, "connections",
        f"(api_processes + worker_processes) x DB_POOL_SIZE={pool} of preset {preset}")
    f["postgres_connections"] = Figure(
        (api_processes + worker_processes) * usage.postgres_pool_size, "connections",
        "(api_processes + worker_processes) x postgres_pool_size")

    limits = {
        "MongoDB connections": (f["mongodb_connections"].value,
                                usage.mongodb_max_connections, "mongodb_max_connections"),
        "PostgreSQL connections": (f["postgres_connections"].value,
                                   usage.postgres_max_connections, "postgres_max_connections"),
        "Redis CPU (one node)": (redis_busy, REDIS_USABLE_CORE_SHARE,
                                 f"{REDIS_USABLE_CORE_SHARE} of a core per Redis node"),
    }
    use = {name: used / limit for name, (used, limit, _) in limits.items()}
    binding = max(use, key=lambda name: use[name])
    return {
        "figures": {name: asdict(figure) for name, figure in f.items()},
        "limits": {name: {"used": used, "limit": limit, "share": round(use[name], 4),
                          "limit_from": source}
                   for name, (used, limit, source) in limits.items()},
        "binding_constraint": binding,
        "fits": use[binding] <= 1,
        "preset": preset,
        "preset_why": f"the seed's {preset} preset covers " + (
            "any number of users" if math.isinf(up_to) else f"up to {up_to:,.0f} users"),
        "inputs": asdict(usage),
        "costs": asdict(costs),
    }


def _human(value: float, unit: str) -> str:
    if unit == "bytes":
        for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= scale:
                return f"{value / scale:.1f} {name}"
        return f"{value:.0f} B"
    if value >= 100 or float(value).is_integer():
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}"


def as_table(result: dict[str, Any]) -> str:
    """The plan for a terminal: figures, limits, the verdict, then the assumptions."""
    figures = result["figures"]
    width = max(len(name) for name in figures)
    lines = [f"{name:<{width}}  {_human(fig['value'], fig['unit']):>24}   {fig['how']}"
             for name, fig in figures.items()]
    lines.append("")
    for name, limit in result["limits"].items():
        lines.append(f"{name:<24} {limit['used']:>12,.2f} of {limit['limit']:,} "
                     f"({limit['share']:.0%}; limit: {limit['limit_from']})")
    lines.append("")
    verdict = "fits" if result["fits"] else "DOES NOT FIT"
    lines.append(f"binding constraint: {result['binding_constraint']} ({verdict})")
    lines.append(f"preset: {result['preset']} ({result['preset_why']})")
    lines.append("")
    lines.append("inputs: " + ", ".join(f"{k}={v}" for k, v in result["inputs"].items()))
    lines.append("costs: " + "; ".join(result["costs"]["source"].values()))
    return "\n".join(lines)
