"""The ``authnode`` command as an operator runs it: a subprocess, no services needed.

Each run gets a temporary working folder (so no stray ``.env`` is read) and an environment
without any ``AUTHNODE_*`` or authnode setting variable, so only what a test sets counts.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from authnode.settings import SPECS
from authnode.tuning import read_host_resources

SETTING_VARIABLES = frozenset(spec.env for spec in SPECS)
SECRET = "DcA9yW0Crnzt78FbtdJj8W0YK9wwcA079t-jsJm6NYPb8Z0mnDAbTeCtacsMJKR7"


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("AUTHNODE_", "NOTIFY_SOCKET", "WATCHDOG_"))
             and key not in SETTING_VARIABLES}
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "authnode", *args], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=timeout, check=False)


def config_rows(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """``config show`` output as {variable: (value, source)}; columns are 2+ spaces apart."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = {}
    settings_part = result.stdout.split("\n\n")[0]  # the connection budget follows
    for line in settings_part.splitlines():
        name, value, source = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        rows[name] = (value, source)
    return rows


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "config", "migrate", "check"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command
    assert "--preset" in result.stdout


def test_serve_help_shows_roles(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "[api|worker|all]" in result.stdout
    assert "--bind" in result.stdout


def test_config_show_tunes_from_this_host(tmp_path: Path) -> None:
    rows = config_rows(run_cli(tmp_path, "config", "show"))
    # Expected values from the host's own CPUs by the documented formulas (not by calling
    # tune()): on the 2-CPU reference machine WORKER_CONCURRENCY is 10, the CPU queue 2.
    cpus = read_host_resources().cpus
    assert rows["WORKER_CONCURRENCY"] == (str(max(1, int(cpus * 5 + 1e-9))),
                                          "tuned from hardware")
    assert rows["WORKER_CPU_CONCURRENCY"] == (str(max(1, math.floor(cpus))),
                                              "tuned from hardware")
    assert rows["SHUTDOWN_TIMEOUT_MS"] == ("10000", "default")
    assert rows["SECRET_KEY"] == ("(unset)", "default")


def test_config_show_environment_wins_over_tuning(tmp_path: Path) -> None:
    rows = config_rows(run_cli(tmp_path, "config", "show", env={"WORKER_CONCURRENCY": "7"}))
    assert rows["WORKER_CONCURRENCY"] == ("7", "environment")


def test_config_show_reads_dot_env_in_the_working_folder(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WORKER_CONCURRENCY=3\n", encoding="utf-8")
    rows = config_rows(run_cli(tmp_path, "config", "show"))
    assert rows["WORKER_CONCURRENCY"] == ("3", "file .env")


HIGH_SCALE = {"DB_POOL_SIZE": "100", "DB_MIN_POOL_SIZE": "50", "WORKER_CONCURRENCY": "50",
              "SHUTDOWN_TIMEOUT_MS": "30000", "DB_WAIT_QUEUE_TIMEOUT_MS": "5000",
              "DISABLE_STALLED_JOB_CHECK": "false"}


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--preset", "high-scale", "config", "show"), {}),
        (("config", "show", "--preset", "high-scale"), {}),
        (("config", "show"), {"AUTHNODE_PRESET": "high-scale"}),
    ],
    ids=["before-command", "after-command", "AUTHNODE_PRESET"],
)
def test_config_show_with_high_scale_preset(tmp_path: Path, args: tuple[str, ...],
                                            env: dict[str, str]) -> None:
    rows = config_rows(run_cli(tmp_path, *args, env=env))
    for variable, value in HIGH_SCALE.items():
        assert rows[variable] == (value, "preset high-scale"), variable
    assert rows["WORKER_CPU_CONCURRENCY"][1] == "tuned from hardware"


def test_config_show_environment_beats_preset(tmp_path: Path) -> None:
    rows = config_rows(run_cli(tmp_path, "config", "show", "--preset", "high-scale",
                               env={"SHUTDOWN_TIMEOUT_MS": "5000"}))
    assert rows["SHUTDOWN_TIMEOUT_MS"] == ("5000", "environment")
    assert rows["DB_POOL_SIZE"] == ("100", "preset high-scale")


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "config", "show", env={
        "SECRET_KEY": SECRET,
        "POSTGRES_URL": "postgresql://jobs:pg-password-9@db:5432/authnode",
    })
    rows = config_rows(result)
    assert rows["SECRET_KEY"] == ("********", "environment")
    assert rows["POSTGRES_URL"] == ("postgresql://jobs:****@db:5432/authnode", "environment")
    assert SECRET not in result.stdout
    assert "pg-password-9" not in result.stdout


BAD_SETTINGS = [
    pytest.param(("config", "show"), {"DB_POOL_SIZE": "abc"},
                 ["DB_POOL_SIZE", "'abc'", "whole number >= 1"], id="pool-not-a-number"),
    pytest.param(("config", "show"), {"REDIS_MODE": "foo"},
                 ["REDIS_MODE", "'foo'", "single, cluster"], id="redis-mode"),
    pytest.param(("config", "show"), {"DB_MIN_POOL_SIZE": "60", "DB_POOL_SIZE": "10"},
                 ["DB_MIN_POOL_SIZE", "DB_POOL_SIZE=10", "no larger than"], id="min-above-max"),
    pytest.param(("--preset", "nope", "config", "show"), {},
                 ["PRESET", "'nope'", "starter, growth, high-scale"], id="unknown-preset"),
    pytest.param(("config", "show", "--preset", "nope"), {},
                 ["PRESET", "'nope'", "starter, growth, high-scale"],
                 id="unknown-preset-after-command"),
    pytest.param(("config", "show"), {"LOGIN_IP_LIMIT": "ten per minute"},
                 ["LOGIN_IP_LIMIT", "COUNT/WINDOW"], id="rate-limit"),
    pytest.param(("serve",), {"DB_POOL_SIZE": "abc", "SECRET_KEY": SECRET},
                 ["DB_POOL_SIZE", "whole number >= 1"], id="serve-pool-not-a-number"),
    pytest.param(("serve",), {}, ["SECRET_KEY", "256 random bits"], id="serve-without-secret"),
    pytest.param(("serve",), {"SECRET_KEY": "short-secret"}, ["SECRET_KEY", "256 random bits"],
                 id="serve-short-secret"),
    pytest.param(("migrate",), {"REDIS_MODE": "foo"}, ["REDIS_MODE", "single, cluster"],
                 id="migrate-redis-mode"),
    pytest.param(("check",), {"DB_POOL_SIZE": "abc"}, ["DB_POOL_SIZE"], id="check-pool"),
]


@pytest.mark.parametrize(("args", "env", "mentions"), BAD_SETTINGS)
def test_bad_setting_exits_2_with_one_line(tmp_path: Path, args: tuple[str, ...],
                                           env: dict[str, str], mentions: list[str]) -> None:
    result = run_cli(tmp_path, *args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    assert result.stdout == ""


def test_short_secret_is_not_echoed(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "config", "show", env={"SECRET_KEY": "short-secret-value"})
    assert result.returncode == 2
    assert "short-secret-value" not in result.stderr + result.stdout
