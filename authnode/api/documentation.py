"""The OpenAPI document: what quart-schema builds, plus the errors every route can give.

Errors that any route of a kind can answer (malformed JSON, a body too large, a failed
validation, a dependency down, a missing or bad bearer token) are added here once, so the
document matches what the server really does without repeating them on every route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quart_schema import document_response
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import Rule

from authnode.api import schemas

T = TypeVar("T")

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
