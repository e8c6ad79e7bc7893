"""The one place where errors become HTTP responses: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import json
import logging
from typing import Any

from procrastinate.exceptions import ConnectorException
from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError
from quart import Quart, Response, jsonify, request
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from authnode.errors import AuthnodeError, Unavailable

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: ("invalid_request", "The request is not valid."),
    401: ("invalid_token", "Authentication is required."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "This method is not allowed here."),
    408: ("request_timeout", "The request took too long to arrive."),
    413: ("payload_too_large", "The request body is too large (at most 64 KiB)."),
    415: ("invalid_request", "Send the body as application/json."),
    431: ("invalid_request", "The request headers are too large."),
}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None,
                   extra: dict[str, object] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}, **(extra or {})})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _from_authnode(error: AuthnodeError) -> Response:
    return error_response(error.status, error.code, error.message, error.headers(),
                          error.extra())


async def _from_validation(error: RequestSchemaValidationError) -> Response:
    body = await request.get_data()
    if body:
        try:
            json.loads(body)
        except ValueError:
            return error_response(400, "invalid_request", "The request body is not valid JSON.")
    return error_response(422, "invalid_request", _describe_validation(error))


def _describe_validation(error: RequestSchemaValidationError) -> str:
    """Name the fields at fault, never echo their values (they may be passwords)."""
    details: Any = error.validation_error
    errors = getattr(details, "errors", None)
    if callable(errors):
        fields = sorted({".".join(str(part) for part in item.get("loc", ())) or "body"
                         for item in errors(include_input=False)})
        return "Invalid or missing fields: " + ", ".join(fields)
    return "The request body does not match the expected JSON object."


def _from_http(error: HTTPException) -> Response:
    status = error.code or 500
    code, message = _HTTP_CODES.get(status, ("http_error", error.description or "Error."))
    headers = {}
    if status == 405 and error.get_response is not None:
        allow = getattr(error, "valid_methods", None)
        if allow:
            headers["Allow"] = ", ".join(allow)
    if status in (408, 413):
        # The server closes the connection after this answer (the rest of the body is not
        # read); saying so lets a keep-alive client open a new one instead of failing.
        headers["Connection"] = "close"
    return error_response(status, code, message, headers)


def _from_undecodable(error: UnicodeDecodeError) -> Response:
    return error_response(400, "invalid_request", "The request body is not valid UTF-8 JSON.")


def _from_too_deep(error: RecursionError) -> Response:
    # json.loads gives up on a body nested thousands of levels deep (a few KiB of "[").
    return error_response(400, "invalid_request", "The request body is nested too deeply.")


def _from_mongo(error: PyMongoError) -> Response:
    log.warning("mongodb unavailable: %s", type(error).__name__)
    return _from_authnode(Unavailable("mongodb"))


def _from_postgres(error: ConnectorException) -> Response:
    log.warning("postgresql unavailable: %s", type(error).__name__)
    return _from_authnode(Unavailable("postgresql", "The job queue (postgresql) is "
                                      "unavailable; nothing was done, try again shortly."))


def _from_unexpected(error: Exception) -> Response:
    log.exception("unhandled error", exc_info=error)
    return error_response(500, "internal_error", "Something went wrong on our side.")


def register_error_handlers(app: Quart) -> None:
    app.register_error_handler(AuthnodeError, _from_authnode)
    app.register_error_handler(RequestSchemaValidationError, _from_validation)
    app.register_error_handler(HTTPException, _from_http)
    app.register_error_handler(UnicodeDecodeError, _from_undecodable)
    app.register_error_handler(RecursionError, _from_too_deep)
    app.register_error_handler(ConnectionFailure, _from_mongo)
    app.register_error_handler(ExecutionTimeout, _from_mongo)
    app.register_error_handler(ConnectorException, _from_postgres)
    app.register_error_handler(Exception, _from_unexpected)
