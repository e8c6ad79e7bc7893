"""OIDC_PROVIDERS and each provider's OIDC_<NAME>_* variables: a bad one stops startup
with one line naming it; the client secret never prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from authnode.settings import Settings, SettingsError, describe, load_settings
from authnode.tuning import HostResources

HOST = HostResources(cpus=2, memory_bytes=8 << 30)
GOOGLE = {"OIDC_PROVIDERS": "google", "OIDC_GOOGLE_ISSUER": "https://accounts.google.com",
          "OIDC_GOOGLE_CLIENT_ID": "123.apps.googleusercontent.com",
          "OIDC_GOOGLE_CLIENT_SECRET": "GOCSPX-very-secret"}


def load(environ: dict[str, str], **kwargs: object) -> Settings:
    return load_settings(environ, host=HOST, **kwargs)  # type: ignore[arg-type]


def refused(environ: dict[str, str], **kwargs: object) -> str:
    with pytest.raises(SettingsError) as caught:
        load(environ, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_provider_with_defaults() -> None:
    settings = load(GOOGLE)
    (google,) = settings.oidc
    assert (google.name, google.issuer, google.scopes, google.display_name) == (
        "google", "https://accounts.google.com", ("openid", "email", "profile"), "Google")
    assert google.client_secret.reveal() == "GOCSPX-very-secret"
    assert "GOCSPX" not in repr(settings)
    rows = {variable: shown for variable, shown, _ in describe(settings)}
    assert rows["OIDC_GOOGLE_CLIENT_SECRET"] == "********"
    assert rows["OIDC_GOOGLE_ISSUER"] == "https://accounts.google.com"
    assert settings.oidc_provider("google") is google and settings.oidc_provider("x") is None


def test_scopes_and_display_name() -> None:
    settings = load({**GOOGLE, "OIDC_GOOGLE_SCOPES": "openid email",
                     "OIDC_GOOGLE_DISPLAY_NAME": "Google Workspace"})
    assert settings.oidc[0].scopes == ("openid", "email")
    assert settings.oidc[0].display_name == "Google Workspace"


def test_no_providers_by_default() -> None:
    assert load({}).oidc == ()


@pytest.mark.parametrize(("changes", "variable", "says"), [
    ({"OIDC_GOOGLE_ISSUER": ""}, "OIDC_GOOGLE_ISSUER", "required"),
    ({"OIDC_GOOGLE_CLIENT_ID": ""}, "OIDC_GOOGLE_CLIENT_ID", "required"),
    ({"OIDC_GOOGLE_CLIENT_SECRET": ""}, "OIDC_GOOGLE_CLIENT_SECRET", "required"),
    ({"OIDC_GOOGLE_ISSUER": "http://accounts.google.com"}, "OIDC_GOOGLE_ISSUER", "https"),
    ({"OIDC_GOOGLE_ISSUER": "https://x.test/?q=1"}, "OIDC_GOOGLE_ISSUER", "issuer URL"),
    ({"OIDC_GOOGLE_SCOPES": "email profile"}, "OIDC_GOOGLE_SCOPES", "openid"),
    ({"OIDC_PROVIDERS": "google,google"}, "OIDC_PROVIDERS", "twice"),
    ({"OIDC_PROVIDERS": "goo-gle"}, "OIDC_PROVIDERS", "provider name"),
    ({"OIDC_ENTRA_ISSUER": "https://login.microsoftonline.com/x/v2.0"},
     "OIDC_ENTRA_ISSUER", "not in OIDC_PROVIDERS"),
])
def test_a_bad_provider_setting_names_its_variable(changes: dict[str, str], variable: str,
                                                   says: str) -> None:
    environ = {k: v for k, v in {**GOOGLE, **changes}.items() if v}
    message = refused(environ)
    assert message.startswith(variable + ":") and says in message


def test_a_bad_secret_is_not_shown() -> None:
    message = refused({**GOOGLE, "OIDC_GOOGLE_CLIENT_SECRET": "   "})
    assert message.startswith("OIDC_GOOGLE_CLIENT_SECRET:")


def test_provider_variables_in_an_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in GOOGLE.items()))
    assert load({}, env_file=env_file).oidc[0].client_id == GOOGLE["OIDC_GOOGLE_CLIENT_ID"]
    env_file.write_text("OIDC_GOOGLE_ISSUER=https://accounts.google.com\n")
    assert refused({}, env_file=env_file).startswith("OIDC_GOOGLE_ISSUER:")
