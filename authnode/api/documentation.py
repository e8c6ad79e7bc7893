"""The OpenAPI document: what quart-schema builds, plus the errors every route can give.

Errors that any route of a kind can answer (malformed JSON, a body too large, a failed
validation, a dependency down, a missing or bad bearer token) are added here once, so the
document matches what the server really does without repeating them on every route.

``/docs`` (Swagger UI) loads its script and stylesheet from this server, out of the
pinned ``swagger-ui-bundle-v2`` package, never from a CDN: a page on the auth service's
origin must not run code that a third party can change, and the docs work offline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from quart import Blueprint, Quart, Response, abort
from quart_schema import document_response, hide
from quart_schema.openapi import OpenAPIProvider
from swagger_ui_bundle import swagger_ui_path
from werkzeug.routing import Rule

from authnode.api import schemas
from authnode.api.access import public

T = TypeVar("T")

DOCS_ASSETS_PATH = "/docs/assets"
# The only files the page needs; nothing else of the package is served.
_DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
                "swagger-ui.css": "text/css; charset=utf-8"}
DOCS_ASSETS_MAX_AGE_S = 86400

NO_CONTENT = {"description": "No content"}
_BODY_METHODS = {"post", "put", "patch", "delete"}


class AuthnodeOpenAPIProvider(OpenAPIProvider):
    def build_response_object(self, model: Any, headers_model: Any) -> tuple[dict[str, Any],
                                                                              dict[str, Any]]:
        if model is None:  # documented with document_response(None, 204|304)
            return dict(NO_CONTENT), {}
        built: tuple[dict[str, Any], dict[str, Any]] = super().build_response_object(
            model, headers_model)
        return built

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        error, error_components = self.build_response_object(schemas.Error, None)
        for path, operations in paths.items():
            if not path.startswith("/v1/"):
                continue
            for method, operation in operations.items():
                statuses = [503]
                if "requestBody" in operation:
                    statuses += [400, 413, 422]
                elif method in _BODY_METHODS:
                    statuses += [413]
                if operation.get("security"):
                    statuses.append(401)
                responses = operation["responses"]
                for status in statuses:
                    responses.setdefault(status, error)
                components.update(error_components)
        return paths, components


def no_content(status: int = 204) -> Callable[[T], T]:
    """Document a response without a body (204, 304)."""
    decorate: Callable[[T], T] = document_response(None, status)  # type: ignore[assignment]
    return decorate


def docs_assets_blueprint(app: Quart) -> Blueprint:
    """Serve Swagger UI's files from the installed package and point ``/docs`` at them."""
    app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js"
    app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = f"{DOCS_ASSETS_PATH}/swagger-ui.css"
    bp = Blueprint("docs_assets", __name__)
    loaded: dict[str, bytes] = {}

    @bp.get(f"{DOCS_ASSETS_PATH}/<name>")
    @public
    @hide
    async def asset(name: str) -> Response:
        content_type = _DOCS_ASSETS.get(name)
        if content_type is None:
            abort(404)
        if name not in loaded:  # read once per process, off the event loop
            loaded[name] = await anyio.to_thread.run_sync(
                Path(str(swagger_ui_path), name).read_bytes)
        return Response(loaded[name], content_type=content_type, headers={
            "Cache-Control": f"public, max-age={DOCS_ASSETS_MAX_AGE_S}"})

    return bp
