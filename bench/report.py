"""The printed table, ``latest.json`` and ``latest.png`` (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HTTP_ROWS = ("floor", "users_me", "peer_users_me", "refresh", "login", "healthz_idle",
             "healthz_under_login", "login_during_probe", "healthz_under_cpu_load",
             "users_me_workers2", "refresh_workers2")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    scenarios = results["scenarios"]
    lines = [f"{'run':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"]
    for name in HTTP_ROWS:
        run = scenarios.get(name)
        if run and "skipped" in run:
            lines.append(f"{name:<22}{'-':>10}   (skipped: {run['skipped']})")
        elif run:
            lines.append(f"{name:<22}{_fmt(run['rps'], 1):>10}{_fmt(run['p50_ms']):>10}"
                         f"{_fmt(run['p99_ms']):>10}{run['error_count']:>8}")
    hb = scenarios.get("hash_bound")
    if hb:
        lines.append(f"{'hash_bound':<22}{_fmt(hb['rps'], 1):>10}   (one verify "
                     f"{hb['verify_ms_median']} ms x {hb['cpus']} CPUs)")
    for name in ("email", "noop_jobs"):
        run = scenarios.get(name)
        if run:
            lines.append(f"{name:<22}{_fmt(run['jobs_per_s'], 1):>10}   jobs/s "
                         f"({run['succeeded']}/{run['jobs']} in {run['seconds']} s)")
    lines.append("")
    lines.append("CPU ms per request / job (server = main thread + other threads; "
                 "cores = all measured)")
    for name, run in scenarios.items():
        cpu = run.get("cpu_ms_per_request") or run.get("cpu_ms_per_job")
        if cpu:
            parts = "  ".join(f"{k} {v}" for k, v in cpu.items())
            cores = f"  cores {run['cores_busy']}" if "cores_busy" in run else ""
            lines.append(f"  {name:<20}{parts}{cores}")
    lines.append("")
    lines.append(f"{'check':<18}{'value':>10}{'floor':>10}{'ratio':>8}  {'target':<9}ok")
    for check in results["checks"]:
        target = ("report" if check["op"] == "report"
                  else f"{check['op']} {check['target']:.2f}")
        ok = {True: "yes", False: "NO", None: "-"}[check["met"]]
        lines.append(f"{check['check']:<18}{_fmt(check['value'], 1):>10}"
                     f"{_fmt(check['floor_value'], 1):>10}{_fmt(check['ratio']):>8}  "
                     f"{target:<9}{ok}")
    lines.append("")
    for proc in results["processes"]:
        rss = ", ".join(f"{p['rss_mib']}" for p in proc["serving"])
        cold = ", ".join(str(v) for v in proc.get("rss_mib_when_ready", []))
        lines.append(f"api --workers {proc['workers']}: serve -> /readyz 200 in "
                     f"{proc['ready_s']:.2f} s (every process ready {proc['all_ready_s']:.2f} s);"
                     f" VmRSS per serving process: {cold} MiB when ready, {rss} MiB after "
                     f"warm-up ({proc.get('warmed_by', '')})")
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["scenarios"]
    checks = {c["check"]: c for c in results["checks"]}

    def get(name: str, key: str) -> float:
        value = s.get(name, {}).get(key)
        return float(value) if value else 0.0

    pairs = [  # (label, measured, floor, floor label, ratio check)
        ("GET /v1/users/me\nreq/s", get("users_me", "rps"), get("floor", "rps"),
         "bare Quart", "users_me_rps"),
        ("POST /v1/auth/refresh\nreq/s", get("refresh", "rps"), get("floor", "rps"),
         "bare Quart", "refresh_rps"),
        ("POST /v1/auth/login\nreq/s", get("login", "rps"), get("hash_bound", "rps"),
         "CPUs / argon2 verify", "login_rps"),
        ("email jobs/s", get("email", "jobs_per_s"), get("noop_jobs", "jobs_per_s"),
         "no-op jobs", "email_rate"),
        ("GET /v1/users/me\nvs fastapi-users", get("users_me", "rps"),
         get("peer_users_me", "rps"), "fastapi-users", "users_me_vs_peer"),
        ("refresh --workers 2\nreq/s", get("refresh_workers2", "rps"), get("refresh", "rps"),
         "--workers 1", "refresh_scaling"),
        ("/me --workers 2\nreq/s", get("users_me_workers2", "rps"), get("users_me", "rps"),
         "--workers 1", "workers_scaling"),
    ]
    latency = [  # (label, scenario, floor)
        ("GET /v1/users/me", "users_me", "floor"),
        ("POST /v1/auth/refresh", "refresh", "floor"),
        ("POST /v1/auth/login", "login", None),
        ("GET /healthz\n(login saturated)", "healthz_under_login", "healthz_idle"),
    ]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 10))
    width = 0.38
    for i, (_label, value, floor, floor_label, check) in enumerate(pairs):
        top.bar(i - width / 2, value, width, color="tab:blue",
                label="authnode" if i == 0 else None)
        top.bar(i + width / 2, floor, width, color="tab:gray",
                label="floor" if i == 0 else None)
        top.text(i + width / 2, floor, floor_label, ha="center", va="bottom", fontsize=7,
                 rotation=0)
        c = checks.get(check, {})
        ratio = c.get("ratio")
        target = "" if c.get("op") in (None, "report") else f" (target {c['op']} {c['target']})"
        top.annotate(f"ratio {ratio}{target}", xy=(i, 0.97),
                     xycoords=("data", "axes fraction"), ha="center", va="top", fontsize=8,
                     color={True: "green", False: "red"}.get(c.get("met"), "black"))
    top.set_xticks(range(len(pairs)), [p[0] for p in pairs], fontsize=8)
    top.set_yscale("log")
    top.set_ylim(top=top.get_ylim()[1] * 4)
    top.set_ylabel("throughput (log)")
    top.set_title("Throughput vs floor (same run, same machine, same wrk)")
    top.legend(loc="lower left", fontsize=8)

    quarter = 0.2
    for i, (_label, name, floor) in enumerate(latency):
        bars = [(get(name, "p50_ms"), "tab:blue", "p50"), (get(name, "p99_ms"), "tab:red", "p99")]
        if floor:
            bars += [(get(floor, "p50_ms"), "lightsteelblue", "floor p50"),
                     (get(floor, "p99_ms"), "lightcoral", "floor p99")]
        for j, (value, colour, what) in enumerate(bars):
            x = i + (j - 1.5) * quarter
            bottom.bar(x, value, quarter, color=colour, label=what if i == 0 else None)
            bottom.text(x, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    bottom.set_xticks(range(len(latency)), [row[0] for row in latency], fontsize=8)
    bottom.set_yscale("log")
    bottom.set_ylabel("latency, ms (log)")
    bottom.set_title("Latency p50 / p99 vs floor (healthz floor: idle, same paced probe)")
    bottom.legend(loc="upper left", fontsize=8)
    meta = results["config"]
    fig.suptitle(f"authnode bench {results['generated_at']} - {meta['connections']} connections,"
                 f" {meta['duration_s']} s per run, {results['machine']['cpus']} CPUs, "
                 f"Redis {meta['redis_mode']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def backend_costs(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """The same scenarios on each FerretDB backend (``--ferretdb both``): throughput, and
    FerretDB's and PostgreSQL's CPU per request or job."""
    names = [backend for backend, _ in runs]
    lines = ["", "what FerretDB's backend costs (same scenarios, one run per backend)",
             f"{'run':<22}" + "".join(f"{n + ' /s':>16}{'ferretdb ms':>13}{'postgres ms':>13}"
                                      for n in names)]
    scenario_names = [name for name in runs[0][1]["scenarios"]
                      if all(name in results["scenarios"] for _, results in runs)]
    for name in scenario_names:
        row = f"{name:<22}"
        for _, results in runs:
            run = results["scenarios"][name]
            rate = run.get("rps", run.get("jobs_per_s"))
            cpu = run.get("cpu_ms_per_request") or run.get("cpu_ms_per_job") or {}
            row += (f"{_fmt(rate, 1) if rate is not None else '-':>16}"
                    f"{cpu.get('ferretdb', '-'):>13}{cpu.get('postgres', '-'):>13}")
        lines.append(row)
    return "\n".join(lines)
