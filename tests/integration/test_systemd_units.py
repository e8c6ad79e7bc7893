"""The unit files in ``systemd/``: ``systemd-analyze verify`` finds nothing to say about
any of them, their hardening scores well offline, they carry the settings operations
relies on, and the example environment file is a valid authnode configuration.

``systemd-analyze verify`` checks that ``ExecStart=``'s binary exists, and this machine has
no ``/opt/authnode/venv``; so each unit is verified as a copy in a temporary folder whose
only change is that path, pointed at the ``authnode`` of the running virtual environment.
Templates are verified both as ``authnode-api@.service`` and as an instance
(``authnode-api@1.service``, found next to the template).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from configparser import RawConfigParser
from pathlib import Path

import pytest

from authnode.settings import parse_env_file

ROOT = Path(__file__).resolve().parents[2]
UNITS_DIR = ROOT / "systemd"
UNITS = ("authnode-api@.service", "authnode-worker.service")
INSTALLED_BINARY = "/opt/authnode/venv/bin/authnode"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is missing: install the Debian package `systemd` "
           "(scripts/bootstrap.sh does)")


def venv_authnode() -> Path:
    binary = Path(sys.executable).parent / "authnode"
    assert binary.is_file(), f"no authnode console script next to {sys.executable}"
    return binary


@pytest.fixture
def unit_copies(tmp_path: Path) -> Path:
    for name in UNITS:
        text = (UNITS_DIR / name).read_text()
        assert INSTALLED_BINARY in text
        (tmp_path / name).write_text(text.replace(INSTALLED_BINARY, str(venv_authnode())))
    return tmp_path


def analyze(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, *args], cwd=folder, capture_output=True,
                          text=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0",
                               "LANG": "C.UTF-8"})


def service_section(name: str) -> dict[str, list[str]]:
    """``[Service]`` of a unit, each key with all its values (keys may repeat)."""
    values: dict[str, list[str]] = {}
    section = None
    for raw in (UNITS_DIR / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["authnode-api@.service", "authnode-api@1.service",
                                  "authnode-api@2.service", "authnode-worker.service"])
def test_systemd_analyze_verify_is_silent(unit_copies: Path, unit: str) -> None:
    result = analyze(unit_copies, "verify", f"./{unit}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", \
        result.stdout + result.stderr


@needs_systemd_analyze
def test_verify_does_report_a_broken_unit(unit_copies: Path) -> None:
    """The check above can fail: an unknown key and a missing binary are reported."""
    text = (unit_copies / "authnode-worker.service").read_text()
    broken = text.replace(str(venv_authnode()), "/nonexistent/authnode").replace(
        "[Service]\n", "[Service]\nNoSuchSetting=1\n")
    (unit_copies / "broken.service").write_text(broken)
    result = analyze(unit_copies, "verify", "./broken.service")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "NoSuchSetting" in output and "/nonexistent/authnode" in output, output


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["authnode-api@1.service", "authnode-worker.service"])
def test_hardening_exposure_is_low(unit_copies: Path, unit: str) -> None:
    result = analyze(unit_copies, "security", "--offline=yes", f"./{unit}")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_units_carry_the_operational_settings(unit: str) -> None:
    service = service_section(unit)

    def one(key: str) -> str:
        assert len(service.get(key, [])) == 1, f"{unit}: {key}= {service.get(key)}"
        return service[key][0]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("WatchdogSec") == "30"
    assert one("Restart") == "on-failure"
    assert one("User") == "authnode" and one("DynamicUser") == "no"
    assert one("EnvironmentFile") == "/etc/authnode/authnode.env"
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("CapabilityBoundingSet", ""),
                       ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX")):
        assert one(key) == value, key
    assert int(one("LimitNOFILE")) >= 65536
    exec_start = one("ExecStart").split()
    assert exec_start[:2] == [INSTALLED_BINARY, "serve"]
    environment = dict(v.split("=", 1) for v in service["Environment"])
    assert environment["INSTANCE_ID"].startswith("%H:")
    if unit.startswith("authnode-api@"):
        assert exec_start[2:] == ["--role", "api", "--workers", "1",
                                  "--metrics-bind", "127.0.0.1:9100"]
        # The instances share one metrics folder, kept when one of them stops.
        assert environment["PROMETHEUS_MULTIPROC_DIR"] == f"/run/{one('RuntimeDirectory')}"
        assert one("RuntimeDirectoryPreserve") == "yes"
    else:
        assert exec_start[2:] == ["--role", "worker", "--metrics-bind", "127.0.0.1:9101"]
        assert "PROMETHEUS_MULTIPROC_DIR" not in environment
    # The stop budget: longer than the graceful drain the example configures.
    shutdown_ms = int(parse_env_file(UNITS_DIR / "authnode.env.example")
                      ["SHUTDOWN_TIMEOUT_MS"])
    assert int(one("TimeoutStopSec")) * 1000 > shutdown_ms + 5000


def test_the_template_says_how_instances_share_the_port() -> None:
    text = (UNITS_DIR / "authnode-api@.service").read_text()
    assert "SO_REUSEPORT" in text


def test_the_example_environment_file_is_a_valid_configuration() -> None:
    from authnode.settings import SettingsError, load_settings, new_secret_key, require_secret_key
    from authnode.tuning import HostResources

    environ = parse_env_file(UNITS_DIR / "authnode.env.example")
    host = HostResources(cpus=4, memory_bytes=8 << 30)
    # Its placeholder key is refused: the operator must put a real one there.
    with pytest.raises(SettingsError) as caught:
        load_settings(environ, host=host)
    assert caught.value.variable == "SECRET_KEY"
    environ["SECRET_KEY"] = new_secret_key()
    settings = load_settings(environ, host=host)
    require_secret_key(settings)
    assert settings.shutdown_timeout_ms == 30000
    assert settings.bind == "0.0.0.0:8000"
    # Its preset is found where the README installs presets (or in the checkout).
    assert environ["AUTHNODE_PRESET"] in ("starter", "growth", "high-scale")
    assert settings.sources["DB_POOL_SIZE"].startswith("preset")


def test_systemd_readme_covers_the_install() -> None:
    readme = (UNITS_DIR / "README.md").read_text()
    for step in ("adduser --system", "/opt/authnode/venv", "/etc/authnode/authnode.env",
                 "/etc/authnode/presets", "authnode migrate", "systemctl enable",
                 "authnode-api@3", "/metrics", "9101"):
        assert step in readme, step
    # Each unit file parses as an INI file (no stray lines).
    for unit in UNITS:
        parser = RawConfigParser(strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep case
        parser.read_string((UNITS_DIR / unit).read_text())
        assert {"Unit", "Service", "Install"} <= set(parser.sections())
