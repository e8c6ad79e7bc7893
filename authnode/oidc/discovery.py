"""A provider's discovery document and signing keys, fetched over HTTP (httpx) and kept
in Redis for their HTTP cache lifetime, so every instance shares one copy.

The lifetime is ``Cache-Control: max-age`` (or ``Expires``) clamped to
[``MIN_CACHE_S``, ``MAX_CACHE_S``]; without either, ``DEFAULT_CACHE_S``. An ID token
whose ``kid`` is not in the cached key set makes us fetch the key set again (a provider
rotated its keys), at most once per ``REFETCH_EVERY_S`` per provider, so tokens with
made-up ``kid`` values cannot make us hammer the provider.

A provider that does not answer, or answers nonsense, is :class:`ProviderUnavailable`
naming it: only its own sign-in fails.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from authnode.clients.redis import RedisClient, redis_unavailable
from authnode.oidc.errors import ProviderUnavailable
from authnode.settings import OidcProvider
from authnode.shared import redis_keys

MIN_CACHE_S = 60
MAX_CACHE_S = 24 * 3600
DEFAULT_CACHE_S = 300
REFETCH_EVERY_S = 30
MAX_DOCUMENT_BYTES = 256 * 1024
# Asymmetric algorithms only: an HMAC ID token would be keyed by our client secret.
SUPPORTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                  "ES256", "ES384", "ES512", "EdDSA", "Ed25519"})


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]  # for ID tokens: the document's list, asymmetric only


def cache_lifetime_s(headers: httpx.Headers, now: float) -> int:
    control = headers.get("cache-control", "").lower()
    found = re.search(r"(?:^|[,\s])max-age\s*=\s*(\d+)", control)
    if found:
        seconds = int(found.group(1))
    elif "no-store" in control or "no-cache" in control:
        seconds = MIN_CACHE_S
    elif expires := headers.get("expires"):
        try:
            seconds = int(parsedate_to_datetime(expires).timestamp() - now)
        except (TypeError, ValueError):
            seconds = DEFAULT_CACHE_S
    else:
        seconds = DEFAULT_CACHE_S
    return max(MIN_CACHE_S, min(MAX_CACHE_S, seconds))


def metadata_from(document: dict[str, Any], provider: OidcProvider) -> ProviderMetadata:
    """Check the discovery document: its issuer must be the configured one exactly
    (OpenID Connect Discovery 4.3), and the endpoints must be https (http on localhost)."""
    if document.get("issuer") != provider.issuer:
        raise ProviderUnavailable(provider.name, "its discovery document names another "
                                  "issuer")
    endpoints = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(name)
        if not isinstance(value, str) or not _usable_url(value):
            raise ProviderUnavailable(provider.name, f"its discovery document has no "
                                      f"usable {name}")
        endpoints[name] = value
    offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in offered if isinstance(a, str) and a in SUPPORTED_ALGORITHMS)
    if not algorithms:
        raise ProviderUnavailable(provider.name, "it offers no ID-token algorithm we accept")
    return ProviderMetadata(issuer=provider.issuer, algorithms=algorithms, **endpoints)


def _usable_url(url: str) -> bool:
    parts = httpx.URL(url)
    local = parts.host in ("localhost", "127.0.0.1", "::1")
    return parts.scheme == "https" or (parts.scheme == "http" and local)


class ProviderDirectory:
    """Fetches and caches what the providers publish."""

    def __init__(self, redis: RedisClient, http: httpx.AsyncClient, *,
                 clock: Any = None) -> None:
        import time

        self._redis = redis
        self._http = http
        self._clock = clock or time.time

    async def metadata(self, provider: OidcProvider) -> ProviderMetadata:
        url = provider.issuer + "/.well-known/openid-configuration"
        return metadata_from(await self._document(provider, url), provider)

    async def jwks(self, provider: OidcProvider, metadata: ProviderMetadata, *,
                   refetch: bool = False) -> dict[str, Any]:
        """The provider's key set; ``refetch``: fetch it again (an unknown ``kid``),
        unless that was done in the last ``REFETCH_EVERY_S``."""
        url = metadata.jwks_uri
        if refetch:
            async with redis_unavailable():
                allowed = await self._redis.set(redis_keys.oidc_jwks_refetched(url), b"1",
                                                nx=True, ex=REFETCH_EVERY_S)
            refetch = bool(allowed)
        document = await self._document(provider, url, refetch=refetch)
        if not isinstance(document.get("keys"), list):
            raise ProviderUnavailable(provider.name, "its JWKS has no keys")
        return document

    async def _document(self, provider: OidcProvider, url: str, *,
                        refetch: bool = False) -> dict[str, Any]:
        key = redis_keys.oidc_document(url)
        if not refetch:
            async with redis_unavailable():
                cached = await self._redis.get(key)
            if cached is not None:
                found: dict[str, Any] = json.loads(cached)
                return found
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError:
            raise ProviderUnavailable(provider.name) from None
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
            raise ProviderUnavailable(provider.name, f"HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise ProviderUnavailable(provider.name, "not JSON") from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(provider.name, "not a JSON object")
        lifetime = cache_lifetime_s(response.headers, self._clock())
        async with redis_unavailable():
            await self._redis.set(key, json.dumps(document).encode("utf-8"), ex=lifetime)
        return document
