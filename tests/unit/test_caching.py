"""ETag / If-None-Match handling of authnode.api.caching (RFC 9110 §13.1.2, §8.8.3)."""

from __future__ import annotations

import pytest
from quart import Quart, Response, request

from authnode.api.caching import PublicCache, entity_tags, none_match, strong_etag

ETAG = '"abc123"'


@pytest.mark.parametrize(("header", "matches"), [
    ('"abc123"', True),
    ('W/"abc123"', True),  # If-None-Match compares weakly
    ('"other", "abc123"', True),
    ('"other",W/"abc123"', True),
    (' "other" ,  , "abc123" ', True),  # empty list elements are allowed
    ("*", True),
    (" * ", True),
    ('"other"', False),
    ('"abc123', False),  # not a quoted tag: no match, a full answer
    ("abc123", False),
    ('"abc123"x', False),
    ('"abc"123"', False),
    ("", False),
    (None, False),
    ('W/ "abc123"', False),
])
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert none_match(header, ETAG) is matches


def test_commas_inside_a_tag_are_part_of_it() -> None:
    assert entity_tags('"a,b", "c"') == ["a,b", "c"]
    assert none_match('"a,b"', '"a,b"')
    assert not none_match('"a,b"', '"a"')


def test_strong_etag_is_a_content_hash() -> None:
    assert strong_etag(b"x") == strong_etag(b"x")
    assert strong_etag(b"x") != strong_etag(b"y")
    assert strong_etag(b"x").startswith('"') and not strong_etag(b"x").startswith("W/")


def _app() -> Quart:
    app = Quart(__name__)
    cache = PublicCache({"/doc": 600})

    @app.get("/doc")
    async def doc() -> Response:
        return Response(b'{"keys":[]}', content_type="application/json")

    @app.post("/doc")
    async def post_doc() -> Response:
        return Response(b"posted")

    @app.get("/private")
    async def private() -> Response:
        return Response(b"mine")

    @app.after_request
    async def finish(response: Response) -> Response:
        return await cache.apply(request, response)

    return app


@pytest.mark.anyio
async def test_public_document_revalidates_with_304() -> None:
    client = _app().test_client()
    first = await client.get("/doc")
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "public, max-age=600"
    etag = first.headers["ETag"]
    assert etag == strong_etag(b'{"keys":[]}')

    again = await client.get("/doc", headers={"If-None-Match": f'"zzz", W/{etag}'})
    assert again.status_code == 304
    assert await again.get_data() == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "public, max-age=600"

    star = await client.get("/doc", headers={"If-None-Match": "*"})
    assert star.status_code == 304
    stale = await client.get("/doc", headers={"If-None-Match": '"zzz"'})
    assert stale.status_code == 200 and await stale.get_data() == b'{"keys":[]}'
    head = await client.head("/doc", headers={"If-None-Match": etag})
    assert head.status_code == 304


@pytest.mark.anyio
async def test_other_methods_and_paths_are_left_alone() -> None:
    client = _app().test_client()
    posted = await client.post("/doc", headers={"If-None-Match": "*"})
    assert posted.status_code == 200 and "ETag" not in posted.headers
    private = await client.get("/private", headers={"If-None-Match": "*"})
    assert private.status_code == 200
    assert "ETag" not in private.headers and "Cache-Control" not in private.headers
