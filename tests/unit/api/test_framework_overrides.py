"""The Quart override in ``api/app.py`` (``_plain_dicts_skip_conversion``): a test that
fails if an upgrade of Quart or quart-schema breaks it.

The override sends plain dicts straight to Quart's JSON encoder and everything else through
quart-schema's conversion. With ``QUART_SCHEMA_CONVERT_CASING`` on, quart-schema's
conversion camel-cases keys and Quart's encoder does not, which lets the test see which
one ran without patching anything.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from quart import Quart
from quart_schema import QuartSchema

from authnode.api.app import _plain_dicts_skip_conversion


class Named(BaseModel):
    display_name: str


def make_app() -> Quart:
    app = Quart("override-test")
    QuartSchema(app, convert_casing=True)
    _plain_dicts_skip_conversion(app)

    @app.get("/dict")
    async def plain() -> dict[str, object]:
        return {"display_name": "Ada"}

    @app.get("/dict-with-status")
    async def plain_status() -> tuple[dict[str, object], int]:
        return {"display_name": "Ada"}, 202

    @app.get("/model")
    async def model() -> Named:
        return Named(display_name="Ada")

    return app


@pytest.mark.anyio
async def test_plain_dicts_go_to_quarts_encoder() -> None:
    client = make_app().test_client()
    for path, status in (("/dict", 200), ("/dict-with-status", 202)):
        response = await client.get(path)
        assert response.status_code == status
        # quart-schema's conversion would have written "displayName".
        assert await response.get_json() == {"display_name": "Ada"}


@pytest.mark.anyio
async def test_models_still_go_through_quart_schema() -> None:
    response = await make_app().test_client().get("/model")
    assert response.status_code == 200
    assert await response.get_json() == {"displayName": "Ada"}
