"""Discovery documents: their cache lifetime and what is accepted from them."""

from __future__ import annotations

import httpx
import pytest

from authnode.oidc.discovery import (
    DEFAULT_CACHE_S,
    MAX_CACHE_S,
    MIN_CACHE_S,
    cache_lifetime_s,
    metadata_from,
)
from authnode.oidc.errors import ProviderUnavailable
from authnode.settings import OidcProvider, Secret

PROVIDER = OidcProvider(name="idp", issuer="https://idp.example.test", client_id="c",
                        client_secret=Secret("s"), scopes=("openid",), display_name="IdP")


def document(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "issuer": "https://idp.example.test",
        "authorization_endpoint": "https://idp.example.test/auth",
        "token_endpoint": "https://idp.example.test/token",
        "jwks_uri": "https://idp.example.test/jwks",
        "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"]}
    base.update(changes)
    return base


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Cache-Control": "public, max-age=3600"}, 3600),
    ({"Cache-Control": "max-age=5"}, MIN_CACHE_S),
    ({"Cache-Control": "max-age=99999999"}, MAX_CACHE_S),
    ({"Cache-Control": "no-store"}, MIN_CACHE_S),
    ({"Expires": "Thu, 01 Jan 1970 00:20:00 GMT"}, 1200 - 0),
    ({"Expires": "garbage"}, DEFAULT_CACHE_S),
    ({}, DEFAULT_CACHE_S)])
def test_the_cache_lifetime_follows_http(headers: dict[str, str], expected: int) -> None:
    assert cache_lifetime_s(httpx.Headers(headers), now=0) == expected


def test_only_asymmetric_algorithms_are_kept() -> None:
    assert metadata_from(document(), PROVIDER).algorithms == ("RS256",)
    assert metadata_from(document(id_token_signing_alg_values_supported=None),
                         PROVIDER).algorithms == ("RS256",)
    with pytest.raises(ProviderUnavailable, match="algorithm"):
        metadata_from(document(id_token_signing_alg_values_supported=["none"]), PROVIDER)


@pytest.mark.parametrize("changes", [
    {"issuer": "https://evil.example.test"}, {"token_endpoint": None},
    {"jwks_uri": "http://idp.example.test/jwks"}, {"authorization_endpoint": 7}])
def test_a_document_that_does_not_fit_makes_the_provider_unavailable(
        changes: dict[str, object]) -> None:
    with pytest.raises(ProviderUnavailable, match="'idp'"):
        metadata_from(document(**changes), PROVIDER)
