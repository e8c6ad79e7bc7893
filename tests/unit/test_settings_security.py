"""Settings that would weaken the service are refused at startup, naming the variable:
weak or placeholder ``SECRET_KEY``s, the removed ``TRUST_FORWARDED_FOR``, SMTP credentials
without TLS, malformed ``TRUSTED_PROXIES``; and the profile tombstone outlives the
configured replica lag."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from authnode.settings import (
    PLACEHOLDER_SECRET_KEYS,
    Settings,
    SettingsError,
    describe,
    load_settings,
    new_secret_key,
    parse_env_file,
)
from authnode.shared.cache import tombstone_ttl_s
from authnode.tuning import HostResources

HOST = HostResources(cpus=2, memory_bytes=4 << 30)
EXAMPLE_ENV = Path(__file__).resolve().parents[2] / "systemd" / "authnode.env.example"


def load(environ: dict[str, str], **kwargs: object) -> Settings:
    return load_settings(environ, host=HOST, **kwargs)  # type: ignore[arg-type]


def refused(environ: dict[str, str], **kwargs: object) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load(environ, **kwargs)
    return caught.value


# --------------------------------------------------------------------------- SECRET_KEY

WEAK = [
    pytest.param("a" * 64, id="one-character"),
    pytest.param("test-secret-key-" + "x" * 32, id="few-distinct-characters"),
    pytest.param("s3cr3t-" + "k" * 40, id="mostly-one-character"),
    pytest.param("0123456789abcdef" * 4, id="repeating-hex"),
    pytest.param("Ab3_x9Qz" * 8, id="repeating-base64"),
    pytest.param(secrets.token_hex(31), id="hex-of-31-bytes"),
    pytest.param(secrets.token_urlsafe(31), id="base64url-of-31-bytes"),
    pytest.param("correct horse battery staple " * 2, id="not-base64-or-hex"),
    pytest.param("Zq9!" + secrets.token_urlsafe(40), id="punctuation"),
]


@pytest.mark.parametrize("key", WEAK)
def test_weak_secret_keys_are_refused(key: str) -> None:
    error = refused({"SECRET_KEY": key})
    assert error.variable == "SECRET_KEY"
    assert "256 random bits" in str(error) and "authnode secret" in str(error)
    assert key not in str(error)


@pytest.mark.parametrize("placeholder", sorted(PLACEHOLDER_SECRET_KEYS))
def test_placeholders_are_refused(placeholder: str) -> None:
    error = refused({"SECRET_KEY": placeholder})
    assert error.variable == "SECRET_KEY" and "placeholder" in str(error)


def test_the_example_files_key_is_a_refused_placeholder() -> None:
    example = parse_env_file(EXAMPLE_ENV)["SECRET_KEY"]
    assert example in PLACEHOLDER_SECRET_KEYS
    assert refused({"SECRET_KEY": example}).variable == "SECRET_KEY"


STRONG = [
    pytest.param(lambda: new_secret_key(), id="authnode-secret"),
    pytest.param(lambda: secrets.token_urlsafe(32), id="base64url-unpadded-32-bytes"),
    pytest.param(lambda: secrets.token_hex(32), id="hex-32-bytes"),
    pytest.param(lambda: secrets.token_hex(32).upper(), id="hex-upper"),
    pytest.param(lambda: __import__("base64").urlsafe_b64encode(secrets.token_bytes(32))
                 .decode(), id="base64url-padded"),
    pytest.param(lambda: __import__("base64").b64encode(secrets.token_bytes(33)).decode(),
                 id="standard-base64"),
]


@pytest.mark.parametrize("make", STRONG)
def test_strong_secret_keys_are_accepted(make: object) -> None:
    for _ in range(200):  # random keys: none of them may trip the sanity checks
        key = make()  # type: ignore[operator]
        settings = load({"SECRET_KEY": key})
        assert settings.secret_key is not None and settings.secret_key.reveal() == key


def test_authnode_secret_is_new_each_time_and_long() -> None:
    keys = {new_secret_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(key) >= 64 for key in keys)


# --------------------------------------------------------------------------- removed


def test_trust_forwarded_for_in_the_environment_is_refused() -> None:
    for value in ("true", "false", ""):
        error = refused({"TRUST_FORWARDED_FOR": value})
        assert error.variable == "TRUST_FORWARDED_FOR"
        assert "TRUSTED_PROXIES replaced it" in str(error)


def test_trust_forwarded_for_in_an_env_file_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TRUST_FORWARDED_FOR=true\n")
    error = refused({}, env_file=env_file)
    assert error.variable == "TRUST_FORWARDED_FOR" and "TRUSTED_PROXIES" in str(error)


def test_trust_forwarded_for_in_a_preset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "starter.env").write_text("DB_POOL_SIZE=5\nTRUST_FORWARDED_FOR=false\n")
    error = refused({"AUTHNODE_CONFIG_DIR": str(tmp_path)}, preset="starter")
    assert error.variable == "TRUST_FORWARDED_FOR" and "TRUSTED_PROXIES" in str(error)


# --------------------------------------------------------------------------- proxies


def test_trusted_proxies_parse_and_show() -> None:
    settings = load({"TRUSTED_PROXIES": " 10.0.0.0/8 ,192.0.2.1, fd00::/8,"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.0.2.1/32",
                                                          "fd00::/8"]
    shown = {name: value for name, value, _ in describe(settings)}
    assert shown["TRUSTED_PROXIES"] == "10.0.0.0/8,192.0.2.1/32,fd00::/8"
    assert load({}).trusted_proxies == ()


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "proxy.internal", "10.0.0.*", "::1/129"])
def test_malformed_trusted_proxies_are_refused(bad: str) -> None:
    error = refused({"TRUSTED_PROXIES": f"10.0.0.0/8,{bad}"})
    assert error.variable == "TRUSTED_PROXIES" and "CIDR" in str(error)


# --------------------------------------------------------------------------- SMTP


@pytest.mark.parametrize("url", ["smtp://mailer:pw@mail.example.com:587",
                                 "smtp://mailer@mail.example.com",
                                 "smtp://mailer:pw@mail.example.com:25?starttls=false"])
def test_smtp_credentials_without_tls_are_refused(url: str) -> None:
    error = refused({"SMTP_URL": url})
    assert error.variable == "SMTP_URL" and "TLS" in str(error)
    assert "pw@" not in str(error)


@pytest.mark.parametrize("url", ["smtp://mailer:pw@mail.example.com:587?starttls=true",
                                 "smtps://mailer:pw@mail.example.com",
                                 "smtp://127.0.0.1:25"])
def test_smtp_credentials_over_tls_or_no_credentials_are_fine(url: str) -> None:
    assert load({"SMTP_URL": url}).smtp_url == url


def test_smtp_insecure_auth_can_be_allowed_explicitly() -> None:
    settings = load({"SMTP_URL": "smtp://mailer:pw@127.0.0.1:25",
                     "SMTP_ALLOW_INSECURE_AUTH": "true"})
    assert settings.smtp_allow_insecure_auth is True


def test_the_sender_refuses_credentials_without_tls_too() -> None:
    from authnode.mail.senders import SmtpSender

    with pytest.raises(ValueError, match="without TLS"):
        SmtpSender("smtp://mailer:pw@127.0.0.1:25")
    SmtpSender("smtp://mailer:pw@127.0.0.1:25", allow_insecure_auth=True)


# --------------------------------------------------------------------------- the rest


@pytest.mark.parametrize("lag_s", [0, 5, 30, 600])
def test_the_profile_tombstone_outlives_the_replica_lag(lag_s: int) -> None:
    settings = load({"MAX_REPLICA_LAG_S": str(lag_s)})
    assert tombstone_ttl_s(settings.max_replica_lag_s) > lag_s


def test_metrics_bind_is_off_unless_set() -> None:
    assert load({}).metrics_bind is None
    assert load({"METRICS_BIND": "127.0.0.1:9100"}).metrics_bind == "127.0.0.1:9100"
    assert refused({"METRICS_BIND": "9100"}).variable == "METRICS_BIND"
