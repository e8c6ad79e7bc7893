"""Unit tests for authnode.settings: pure, fake hosts and temporary files only, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from authnode.settings import (
    PRESETS,
    RateLimit,
    Secret,
    Settings,
    SettingsError,
    describe,
    load_settings,
    parse_env_file,
)
from authnode.tuning import HostResources

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"

# A 2-CPU, 24 GiB host: tuned WORKER_CONCURRENCY 10, DB_POOL_SIZE 20, DB_MIN_POOL_SIZE 2.
BIG_HOST = HostResources(cpus=2, memory_bytes=24 << 30)
# A 1.5-CPU, 512 MiB container: tuned WORKER_CONCURRENCY 7, DB_POOL_SIZE 10, minimum 1.
SMALL_HOST = HostResources(cpus=1.5, memory_bytes=512 << 20)

SECRET = "n6iRIX8DSGWIbwYmIGQ7-iHVlOoI4F3Vz1YcVmZKXHb-kQ8yoQ_H95ediBPTTKnv"

# The seed's presets, exactly.
PRESET_VALUES = {
    "starter": {"DB_POOL_SIZE": "10", "DB_MIN_POOL_SIZE": "1", "WORKER_CONCURRENCY": "5"},
    "growth": {"DB_POOL_SIZE": "50", "DB_MIN_POOL_SIZE": "10", "DB_MAX_IDLE_TIME_MS": "30000",
               "WORKER_CONCURRENCY": "20"},
    "high-scale": {"DB_POOL_SIZE": "100", "DB_MIN_POOL_SIZE": "50",
                   "DB_WAIT_QUEUE_TIMEOUT_MS": "5000", "WORKER_CONCURRENCY": "50",
                   "DISABLE_STALLED_JOB_CHECK": "false", "SHUTDOWN_TIMEOUT_MS": "30000"},
}


@pytest.fixture(autouse=True)
def _no_outside_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    # Preset files are looked up through os.environ's AUTHNODE_CONFIG_DIR first; keep the
    # developer's own setting from changing what these tests read.
    monkeypatch.delenv("AUTHNODE_CONFIG_DIR", raising=False)


def load(environ: dict[str, str] | None = None, host: HostResources = BIG_HOST,
         **kwargs: object) -> Settings:
    return load_settings(environ or {}, host=host, **kwargs)  # type: ignore[arg-type]


def write_env(path: Path, **values: str) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()),
                    encoding="utf-8")
    return path


# --------------------------------------------------------------------------- precedence


def test_nothing_set_gives_tuned_and_default_values_with_their_sources() -> None:
    settings = load()
    assert settings.worker_concurrency == 10
    assert settings.worker_cpu_concurrency == 2
    assert settings.db_pool_size == 20
    assert settings.db_min_pool_size == 2
    assert settings.hash_threads == 2
    assert settings.api_workers == 2
    for variable in ("WORKER_CONCURRENCY", "WORKER_CPU_CONCURRENCY", "DB_POOL_SIZE",
                     "DB_MIN_POOL_SIZE", "HASH_THREADS", "REDIS_MAX_CONNECTIONS",
                     "POSTGRES_POOL_SIZE", "API_WORKERS"):
        assert settings.sources[variable] == "tuned from hardware", variable
    assert settings.shutdown_timeout_ms == 10000
    assert settings.db_wait_queue_timeout_ms == 10000
    assert settings.disable_stalled_job_check is False
    assert settings.redis_mode == "single"
    assert settings.secret_key is None
    for variable in ("SHUTDOWN_TIMEOUT_MS", "REDIS_MODE", "SECRET_KEY", "MONGODB_URI"):
        assert settings.sources[variable] == "default", variable


def test_small_fractional_host_is_tuned_down() -> None:
    settings = load(host=SMALL_HOST)
    assert settings.worker_concurrency == 7  # int(1.5 * 5)
    assert settings.worker_cpu_concurrency == 1
    assert settings.db_pool_size == 10
    assert settings.db_min_pool_size == 1
    assert settings.hash_threads == 1
    assert settings.api_workers == 1
    assert settings.redis_max_connections == 25
    assert settings.postgres_pool_size == 4


def test_each_layer_beats_the_ones_below(tmp_path: Path) -> None:
    """environment > .env file > preset > tuned > default, each recorded as the source."""
    env_file = write_env(tmp_path / ".env", DB_POOL_SIZE="55", WORKER_CONCURRENCY="8",
                         SHUTDOWN_TIMEOUT_MS="12000")
    settings = load({"DB_POOL_SIZE": "64"}, preset="high-scale", env_file=env_file)

    # Set in all of environment, file, preset and tuning: the environment wins.
    assert settings.db_pool_size == 64
    assert settings.sources["DB_POOL_SIZE"] == "environment"
    # Set in file, preset and tuning: the file wins.
    assert settings.worker_concurrency == 8
    assert settings.sources["WORKER_CONCURRENCY"] == f"file {env_file}"
    # Set in file, preset and default: the file wins.
    assert settings.shutdown_timeout_ms == 12000
    assert settings.sources["SHUTDOWN_TIMEOUT_MS"] == f"file {env_file}"
    # Set in preset and tuning: the preset wins.
    assert settings.db_min_pool_size == 50
    assert settings.sources["DB_MIN_POOL_SIZE"] == "preset high-scale"
    # Set in preset and default: the preset wins.
    assert settings.db_wait_queue_timeout_ms == 5000
    assert settings.sources["DB_WAIT_QUEUE_TIMEOUT_MS"] == "preset high-scale"
    # Only tuned: tuning wins over nothing.
    assert settings.worker_cpu_concurrency == 2
    assert settings.sources["WORKER_CPU_CONCURRENCY"] == "tuned from hardware"
    # Only a default.
    assert settings.keep_alive_timeout_s == 5.0
    assert settings.sources["KEEP_ALIVE_TIMEOUT_S"] == "default"


def test_environment_beats_file_for_a_default_variable(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / ".env", LOG_LEVEL="debug", ACCESS_TOKEN_TTL="10m")
    settings = load({"LOG_LEVEL": "warning"}, env_file=env_file)
    assert (settings.log_level, settings.sources["LOG_LEVEL"]) == ("WARNING", "environment")
    assert settings.access_token_ttl_s == 600
    assert settings.sources["ACCESS_TOKEN_TTL"] == f"file {env_file}"


def test_command_line_overrides_beat_the_environment() -> None:
    settings = load({"BIND": "0.0.0.0:9000"}, overrides={"BIND": "127.0.0.1:7000"})
    assert (settings.bind, settings.sources["BIND"]) == ("127.0.0.1:7000", "command line")


def test_missing_env_file_is_ignored(tmp_path: Path) -> None:
    settings = load(env_file=tmp_path / "absent.env")
    assert settings.sources["DB_POOL_SIZE"] == "tuned from hardware"


def test_env_file_syntax(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# comment\n\nexport LOG_LEVEL=debug\nMAIL_FROM=\"Auth <a@b.test>\"\n"
                    "DB_POOL_SIZE=30  # thirty\n", encoding="utf-8")
    assert parse_env_file(path) == {"LOG_LEVEL": "debug", "MAIL_FROM": "Auth <a@b.test>",
                                    "DB_POOL_SIZE": "30"}
    settings = load(env_file=path)
    assert settings.mail_from == "Auth <a@b.test>"
    assert settings.db_pool_size == 30


def test_preset_from_authnode_preset_variable() -> None:
    settings = load({"AUTHNODE_PRESET": "growth"})
    assert settings.db_pool_size == 50
    assert settings.sources["DB_POOL_SIZE"] == "preset growth"


def test_argon2_memory_from_the_environment_feeds_the_tuning() -> None:
    # 4 GiB per hash: two concurrent hashes would exceed a quarter of 24 GiB.
    settings = load({"ARGON2_MEMORY_KIB": str(4 << 20)})
    assert settings.hash_threads == 1
    assert settings.sources["HASH_THREADS"] == "tuned from hardware"


def test_empty_tuned_variable_counts_as_unset() -> None:
    settings = load({"WORKER_CONCURRENCY": ""})
    assert settings.worker_concurrency == 10
    assert settings.sources["WORKER_CONCURRENCY"] == "tuned from hardware"


def test_values_parse_into_their_types() -> None:
    settings = load({"REFRESH_TOKEN_TTL": "7d", "LOGIN_ACCOUNT_LIMIT": "5/1h",
                     "EMAIL_ADDRESS_LIMIT": "1/minute", "TRUSTED_PROXIES": "10.0.0.0/8, fd00::1",
                     "REDIS_MODE": "cluster",
                     "REDIS_URL": "redis://10.0.0.1:7000,redis://10.0.0.2:7000",
                     "SECRET_KEY": SECRET})
    assert settings.refresh_token_ttl_s == 7 * 86400
    assert settings.login_account_limit == RateLimit(count=5, window_s=3600)
    assert settings.email_address_limit == RateLimit(count=1, window_s=60)
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "fd00::1/128"]
    assert settings.redis_mode == "cluster"
    assert settings.secret_key == Secret(SECRET)
    assert settings.secret_key is not None and settings.secret_key.reveal() == SECRET


# --------------------------------------------------------------------------- presets


def test_config_dir_holds_exactly_the_known_presets() -> None:
    assert sorted(path.stem for path in CONFIG_DIR.glob("*.env")) == sorted(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_file_has_exactly_the_seed_values(name: str) -> None:
    assert parse_env_file(CONFIG_DIR / f"{name}.env") == PRESET_VALUES[name]


@pytest.mark.parametrize("host", [BIG_HOST, SMALL_HOST], ids=["2cpu-24g", "1.5cpu-512m"])
@pytest.mark.parametrize("name", PRESETS)
def test_preset_values_reach_the_settings(name: str, host: HostResources) -> None:
    settings = load(preset=name, host=host)
    shown = {variable: value for variable, value, _ in describe(settings)}
    for variable, value in PRESET_VALUES[name].items():
        assert shown[variable] == value, variable
        assert settings.sources[variable] == f"preset {name}", variable


def test_high_scale_preset_in_detail() -> None:
    settings = load(preset="high-scale", host=SMALL_HOST)
    assert settings.db_pool_size == 100
    assert settings.db_min_pool_size == 50
    assert settings.db_wait_queue_timeout_ms == 5000
    assert settings.worker_concurrency == 50
    assert settings.disable_stalled_job_check is False
    assert settings.shutdown_timeout_ms == 30000
    # What the preset leaves out is still tuned for the host.
    assert settings.worker_cpu_concurrency == 1
    assert settings.sources["WORKER_CPU_CONCURRENCY"] == "tuned from hardware"


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("environ", "variable", "explains"),
    [
        ({"DB_POOL_SIZE": "abc"}, "DB_POOL_SIZE", "whole number >= 1"),
        ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE", "whole number >= 1"),
        ({"REDIS_MODE": "foo"}, "REDIS_MODE", "single, cluster"),
        ({"DB_MIN_POOL_SIZE": "60", "DB_POOL_SIZE": "10"}, "DB_MIN_POOL_SIZE",
         "DB_POOL_SIZE=10"),
        ({"LOGIN_ACCOUNT_LIMIT": "ten per minute"}, "LOGIN_ACCOUNT_LIMIT", "COUNT/WINDOW"),
        ({"REGISTER_IP_LIMIT": "10/fortnight"}, "REGISTER_IP_LIMIT", "COUNT/WINDOW"),
        ({"SECRET_KEY": "too-short"}, "SECRET_KEY", "256 random bits"),
        ({"REDIS_URL": "redis://10.0.0.1:7000,redis://10.0.0.2:7000"}, "REDIS_URL",
         "REDIS_MODE=cluster"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/3"}, "REDIS_URL", "database 0"),
        ({"ACCESS_TOKEN_TTL": "15 minutes"}, "ACCESS_TOKEN_TTL", "15m"),
        ({"DISABLE_STALLED_JOB_CHECK": "maybe"}, "DISABLE_STALLED_JOB_CHECK", "true, false"),
        ({"ARGON2_MEMORY_KIB": "1024"}, "ARGON2_MEMORY_KIB", ">= 19456"),
        ({"POSTGRES_URL": "mysql://db/authnode"}, "POSTGRES_URL", "postgresql://"),
        ({"BIND": "8000"}, "BIND", "HOST:PORT"),
    ],
)
def test_bad_value_names_the_variable_and_what_it_accepts(
        environ: dict[str, str], variable: str, explains: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(environ)
    assert caught.value.variable == variable
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert explains in message
    assert "\n" not in message


def test_bad_value_in_a_file_is_reported_like_one_in_the_environment(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / ".env", WORKER_CONCURRENCY="lots")
    with pytest.raises(SettingsError) as caught:
        load(env_file=env_file)
    assert caught.value.variable == "WORKER_CONCURRENCY"
    assert "'lots'" in str(caught.value)


def test_minimum_above_a_preset_maximum_is_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        load({"DB_MIN_POOL_SIZE": "20"}, preset="starter")
    assert caught.value.variable == "DB_MIN_POOL_SIZE"
    assert "DB_POOL_SIZE=10" in str(caught.value)


def test_small_pool_without_a_minimum_still_loads() -> None:
    """Setting only DB_POOL_SIZE below the tuned minimum (2 on this host) must not fail on a
    DB_MIN_POOL_SIZE the operator never set: the tuned minimum follows the maximum."""
    settings = load({"DB_POOL_SIZE": "1"})
    assert settings.db_pool_size == 1
    assert settings.db_min_pool_size == 1
    assert settings.sources["DB_MIN_POOL_SIZE"] == "tuned from hardware"


@pytest.mark.parametrize("name", ["nope", "Starter", "high_scale"])
def test_unknown_preset_names_the_accepted_ones(name: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(preset=name)
    assert caught.value.variable == "--preset/AUTHNODE_PRESET"
    assert "starter, growth, high-scale" in str(caught.value)


def test_unknown_variable_in_a_file_is_refused(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / ".env", DB_POOL_SIZ="10")
    with pytest.raises(SettingsError) as caught:
        load(env_file=env_file)
    assert caught.value.variable == "DB_POOL_SIZ"
    assert "unknown variable" in str(caught.value)


def test_malformed_env_file_line_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("LOG_LEVEL=info\nthis is not a setting\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load(env_file=path)
    assert caught.value.variable == str(path)
    assert "line 2" in str(caught.value)


def test_unrelated_environment_variables_are_ignored() -> None:
    settings = load({"PATH": "/usr/bin", "HOME": "/root", "DB_POOL_SIZ": "x"})
    assert settings.sources["DB_POOL_SIZE"] == "tuned from hardware"


# --------------------------------------------------------------------------- secrets


def test_secret_never_prints() -> None:
    secret = Secret(SECRET)
    for shown in (str(secret), repr(secret), f"{secret}", f"{secret!r}", str([secret])):
        assert SECRET not in shown
        assert SECRET[:8] not in shown
    assert secret.reveal() == SECRET


def test_settings_repr_hides_the_secret_key() -> None:
    settings = load({"SECRET_KEY": SECRET})
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_short_secret_key_error_does_not_echo_it() -> None:
    short = "hunter2-not-long-enough"
    with pytest.raises(SettingsError) as caught:
        load({"SECRET_KEY": short})
    assert short not in str(caught.value)
    assert caught.value.variable == "SECRET_KEY"


def test_describe_masks_secret_key_and_url_passwords() -> None:
    settings = load({
        "SECRET_KEY": SECRET,
        "MONGODB_URI": "mongodb://app:mongo-pass-1@db1:27017,db2:27017/authnode",
        "POSTGRES_URL": "postgresql://jobs:pg-pass-2@pg:5432/authnode",
        "SMTP_URL": "smtp://mailer:smtp-pass-3@mail:587?starttls=true",
        "REDIS_MODE": "cluster",
        "REDIS_URL": "redis://:redis-pass-4@r1:7000,redis://:redis-pass-5@r2:7000",
    })
    rows = describe(settings)
    shown = {variable: value for variable, value, _ in rows}
    text = "\n".join(" ".join(row) for row in rows)
    for secret in (SECRET, "mongo-pass-1", "pg-pass-2", "smtp-pass-3", "redis-pass-4",
                   "redis-pass-5"):
        assert secret not in text
    assert shown["SECRET_KEY"] == "********"
    assert shown["MONGODB_URI"] == "mongodb://app:****@db1:27017,db2:27017/authnode"
    assert shown["POSTGRES_URL"] == "postgresql://jobs:****@pg:5432/authnode"
    assert shown["SMTP_URL"] == "smtp://mailer:****@mail:587?starttls=true"
    assert shown["REDIS_URL"] == "redis://:****@r1:7000,redis://:****@r2:7000"


def test_describe_lists_every_variable_once_with_its_source(tmp_path: Path) -> None:
    settings = load({"WORKER_CONCURRENCY": "7"}, preset="starter")
    rows = describe(settings)
    names = [variable for variable, _, _ in rows]
    assert len(names) == len(set(names))
    by_name = {variable: (value, source) for variable, value, source in rows}
    assert by_name["WORKER_CONCURRENCY"] == ("7", "environment")
    assert by_name["DB_POOL_SIZE"] == ("10", "preset starter")
    assert by_name["WORKER_CPU_CONCURRENCY"] == ("2", "tuned from hardware")
    assert by_name["SECRET_KEY"] == ("(unset)", "default")
    assert by_name["DISABLE_STALLED_JOB_CHECK"] == ("false", "default")
