"""authnode.oidc.discovery against real Redis (single node and cluster) and a real
provider: the discovery document and keys are fetched once and shared through Redis for
their HTTP lifetime; an unknown ``kid`` refetches the keys at most once per
``REFETCH_EVERY_S``; a provider that does not answer is a 503 naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster

from authnode.clients.redis import RedisClient, create_redis
from authnode.oidc.discovery import DEFAULT_CACHE_S, REFETCH_EVERY_S, ProviderDirectory
from authnode.oidc.errors import ProviderUnavailable
from authnode.settings import OidcProvider, Secret, load_settings
from authnode.shared import redis_keys
from authnode.tuning import HostResources
from tests.services import OidcProviderServer, RedisTarget, free_port

pytestmark = pytest.mark.anyio


class CountingTransport(httpx.AsyncBaseTransport):
    """The real network, counting requests per path (no answer is made up)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def redis(redis_target: RedisTarget) -> AsyncIterator[RedisClient]:
    settings = load_settings({"REDIS_URL": redis_target.url, "REDIS_MODE": redis_target.mode},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    client = create_redis(settings)
    if isinstance(client, RedisCluster):
        await client.initialize()
    yield client
    await client.aclose()


def _provider(issuer: str) -> OidcProvider:
    return OidcProvider(name="idp", issuer=issuer, client_id="c", client_secret=Secret("s"),
                        scopes=("openid",), display_name="IdP")


async def test_documents_are_fetched_once_and_shared_through_redis(
        redis: RedisClient, oidc_provider: OidcProviderServer) -> None:
    provider = _provider(oidc_provider.issuer)
    transport = CountingTransport()
    async with httpx.AsyncClient(transport=transport) as http:
        one, two = ProviderDirectory(redis, http), ProviderDirectory(redis, http)
        await redis.delete(redis_keys.oidc_document(
            provider.issuer + "/.well-known/openid-configuration"))
        metadata = await one.metadata(provider)
        assert await two.metadata(provider) == metadata
        assert metadata.algorithms == ("RS256",)
        await redis.delete(redis_keys.oidc_document(metadata.jwks_uri),
                           redis_keys.oidc_jwks_refetched(metadata.jwks_uri))
        keys = await one.jwks(provider, metadata)
        assert await two.jwks(provider, metadata) == keys
        assert transport.paths == ["/.well-known/openid-configuration", "/jwks"]
        ttl = await redis.ttl(redis_keys.oidc_document(metadata.jwks_uri))
        assert 0 < ttl <= DEFAULT_CACHE_S  # the provider sends no max-age
        # An unknown kid: one refetch, then none for REFETCH_EVERY_S, on any instance.
        await one.jwks(provider, metadata, refetch=True)
        await two.jwks(provider, metadata, refetch=True)
        assert transport.paths[2:] == ["/jwks"]
        assert 0 < await redis.ttl(redis_keys.oidc_jwks_refetched(metadata.jwks_uri)) \
            <= REFETCH_EVERY_S


async def test_a_provider_that_does_not_answer_is_unavailable_by_name(
        redis: RedisClient) -> None:
    provider = _provider(f"http://127.0.0.1:{free_port()}")
    async with httpx.AsyncClient(timeout=2) as http:
        with pytest.raises(ProviderUnavailable, match="'idp'") as caught:
            await ProviderDirectory(redis, http).metadata(provider)
    assert caught.value.status == 503
