"""What can be tested of the Docker image here (no container engine on these machines):
the wheel its build stage makes, installed in a fresh virtual environment, runs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_wheel_builds_and_its_cli_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", tmp_path / "wheels", ".")
    (wheel,) = (tmp_path / "wheels").glob("authnode-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "authnode/cli.py" in names and "authnode/py.typed" in names
    assert "authnode/accounts/passwords/common_passwords.txt" in names  # package data
    assert "authnode/capacity_costs.json" in names
    assert not any(name.startswith("tests/") for name in names)
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for dependency in ("quart", "hypercorn", "pymongo", "redis", "procrastinate", "argon2-cffi"):
        assert f"Requires-Dist: {dependency}" in metadata

    # `authnode --help` imports nothing but click (a design rule: the CLI stays instant),
    # so the fresh venv gets the wheel and click only; the full dependency set would take
    # minutes to install on every test run.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", wheel)
    click_wheel = tmp_path / "click"
    run(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", click_wheel,
        "click")
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps",
        *click_wheel.glob("*.whl"))

    help_text = run(venv / "bin" / "authnode", "--help", cwd=tmp_path).stdout
    for command in ("serve", "migrate", "check", "config", "users", "jobs", "keys"):
        assert command in help_text
    serve_help = run(venv / "bin" / "authnode", "serve", "--help", cwd=tmp_path).stdout
    assert "--role [api|worker|all]" in serve_help
    # The planner needs only click and the measured costs shipped in the wheel.
    plan = run(venv / "bin" / "authnode", "capacity", "--users", "1000000", cwd=tmp_path).stdout
    assert "binding constraint:" in plan


def test_dockerfile_runs_the_wheel_as_an_unprivileged_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM python:3.11-slim") == 2  # multi-stage, slim base
    assert "pip wheel" in text and "--no-index --find-links /wheels authnode" in text
    assert "\nUSER authnode\n" in text
    assert "STOPSIGNAL SIGTERM" in text
    assert "HEALTHCHECK" in text and "/readyz" in text
    assert 'ENTRYPOINT ["authnode"]' in text
