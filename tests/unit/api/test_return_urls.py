"""Where a sign-in may send the browser: every open-redirect trick lands on /account."""

from __future__ import annotations

import pytest

from authnode.api.return_urls import safe_return_url
from authnode.settings import Settings, SettingsError, load_settings
from authnode.tuning import HostResources

PUBLIC = "https://auth.example.com/sso"
FALLBACK = PUBLIC + "/account"


def _settings(allowlist: str = "https://app.example.com/after,https://shop.example.com/"
              ) -> Settings:
    return load_settings({"PUBLIC_URL": PUBLIC, "RETURN_URL_ALLOWLIST": allowlist},
                         host=HostResources(cpus=2, memory_bytes=4 << 30))


@pytest.mark.parametrize("raw, expected", [
    ("/account", PUBLIC + "/account"),
    ("/account?tab=sessions", PUBLIC + "/account?tab=sessions"),
    ("https://app.example.com/after", "https://app.example.com/after"),
    ("https://app.example.com/after/welcome?x=1", "https://app.example.com/after/welcome?x=1"),
    ("https://app.example.com/after?x=1", "https://app.example.com/after?x=1"),
    ("HTTPS://APP.EXAMPLE.COM/after", "https://app.example.com/after"),
    ("https://shop.example.com/", "https://shop.example.com/"),
    ("https://shop.example.com", "https://shop.example.com/"),
    ("https://auth.example.com/sso/account", "https://auth.example.com/sso/account"),
])
def test_allowed_return_urls_are_kept(raw: str, expected: str) -> None:
    assert safe_return_url(_settings(), raw) == expected


@pytest.mark.parametrize("raw", [
    None, "", "//evil.example", "//evil.example/after", "///evil.example",
    "https:evil.example", "https:/evil.example", "http://evil.example",
    "/\\evil.example", "\\\\evil.example", "/\t/evil.example", "/\n/evil.example",
    " /account", "%2F%2Fevil.example", "%2f%2fevil.example", "account",
    "javascript:alert(1)", "data:text/html,hi", "evil.example",
    "https://app.example.com.evil.example/after", "https://app.example.com@evil.example/after",
    "https://user:pw@app.example.com/after", "https://evil.example/https://app.example.com/after",
    "https://app.example.com/afterparty", "https://app.example.com/", "http://app.example.com/after",
    "https://app.example.com:444/after", "https://auth.example.com/other",
    "https://auth.example.com/ssox", "/account\u2028", "/" + "a" * 3000,
])
def test_everything_else_falls_back_to_the_account_page(raw: str | None) -> None:
    assert safe_return_url(_settings(), raw) == FALLBACK


def test_an_encoded_slash_path_stays_on_this_site() -> None:
    """Decoded once by the query parser, ``/%2F%2Fevil`` is a path here, not a host."""
    assert safe_return_url(_settings(), "/%2F%2Fevil.example") == PUBLIC + "/%2F%2Fevil.example"


@pytest.mark.parametrize("bad", ["*", "app.example.com", "ftp://app.example.com/",
                                 "https://app.example.com/?q=1", "https://u@app.example.com/",
                                 "https://app.example.com/\\x"])
def test_a_bad_allowlist_entry_is_refused(bad: str) -> None:
    with pytest.raises(SettingsError, match="RETURN_URL_ALLOWLIST"):
        _settings(bad)
